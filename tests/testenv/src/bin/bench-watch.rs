//! `bench-watch`: how fast `kubectl gitops watch` reports an out-of-band edit, and what it costs
//! while nothing happens. Run by `bench/watch`.
//!
//! A benchmark is a command, not a timed test (STYLE.md, habit 11): it prints what it measured,
//! against the issue's targets, and one JSON line for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testenv::bench::{loadavg, median, round3};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use testenv::{ControlPlane, Lifetime};

/// The namespace everything is applied to.
const NS: &str = "bench";
/// The `origin` of the generated repository and the GitRepository's `spec.url`: the watch runs
/// in the checkout, so Git is polled at its HEAD.
const REPO_URL: &str = "https://git.example.com/bench/watch.git";
/// Objects per Flux Kustomization (kustomize grows much faster than linearly with one render).
const PER_KUSTOMIZATION: usize = 1000;
/// Parallel `kubectl apply` processes for the initial apply.
const APPLIERS: usize = 4;

const USAGE: &str = "\
usage: bench/watch [--objects N] [--edits E] [--idle SECONDS] [--plugin PATH]

  --objects N     objects to generate and apply as Flux would (default 1000): a Deployment and a
                  ConfigMap per app, 1000 objects per Kustomization
  --edits E       out-of-band kubectl edits, one at a time, each waited for (default 20)
  --idle SECONDS  how long the idle cost is measured after the edits (default 60)
  --plugin PATH   the kubectl-gitops binary (default <repo>/target/release/kubectl-gitops)
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-watch: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

struct Args {
    objects: usize,
    edits: usize,
    idle: u64,
    plugin: PathBuf,
}

impl Args {
    fn parse() -> Result<Args> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        let mut args = Args {
            objects: 1000,
            edits: 20,
            idle: 60,
            plugin: target.join("release/kubectl-gitops"),
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || -> Result<String> {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))
            };
            let number = |text: String| -> Result<u64> {
                text.parse()
                    .ok()
                    .with_context(|| format!("{flag}: {text:?} is not a valid number"))
            };
            match flag.as_str() {
                "--objects" => args.objects = number(value()?)? as usize,
                "--edits" => args.edits = number(value()?)? as usize,
                "--idle" => args.idle = number(value()?)?,
                "--plugin" => args.plugin = PathBuf::from(value()?),
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        if args.objects < 2 || args.edits == 0 || args.idle == 0 {
            bail!("--objects must be at least 2, --edits and --idle at least 1");
        }
        if args.edits > args.objects / 2 {
            bail!("--edits must be at most half of --objects: each edit changes another object");
        }
        Ok(args)
    }
}

/// Prints a setup step with the time since start, on stderr.
struct Progress(Instant);

impl Progress {
    fn step(&self, what: &str) {
        eprintln!("[{:6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

fn run() -> Result<ExitCode> {
    let args = Args::parse()?;
    let plugin = fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "the plugin {} is missing; build it with `cargo build --release` (bench/watch does)",
            args.plugin.display()
        )
    })?;
    let progress = Progress(Instant::now());
    let work = tempfile::Builder::new()
        .prefix("kubectl-gitops-bench-watch-")
        .tempdir()
        .context("creating a temp dir")?;
    progress.step("starting etcd + kube-apiserver");
    let cp = ControlPlane::start(&work.path().join("cluster"), Lifetime::TiedToThisProcess)?;
    let result = bench(&args, &plugin, &cp, work.path(), &progress);
    stop(&cp);
    result
}

/// Stops the control plane before its directory is removed.
fn stop(cp: &ControlPlane) {
    for &pid in cp.pids() {
        // SAFETY: signalling and reaping processes this program started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
}

fn bench(
    args: &Args,
    plugin: &Path,
    cp: &ControlPlane,
    work: &Path,
    progress: &Progress,
) -> Result<ExitCode> {
    progress.step(&format!("kube-apiserver {} at {}", cp.version, cp.server));
    cp.install_gitops_crds();
    cp.kubectl_run(&["create", "namespace", NS], None)?;
    let repo = work.join("repo");
    let fixture = generate(&repo, args.objects)?;
    let head = testenv::init_bench_repo(&repo, REPO_URL)?;
    progress.step(&format!(
        "repository: {} objects in {} files for {} Kustomization(s), commit {}",
        fixture.objects.len(),
        fixture.files.len(),
        fixture.kustomizations.len(),
        &head[..7]
    ));
    apply_as_flux(cp, &repo, &fixture, &head)?;
    progress.step("applied as kustomize-controller applies, Kustomizations Ready at HEAD");

    let started = Instant::now();
    let mut watch = Watch::start(plugin, cp, &repo, &work.join("cache"))?;
    let startup = started.elapsed().as_secs_f64();
    let start_summary = watch.said.join("; ");
    progress.step(&format!(
        "watch ready after {startup:.1} s: {start_summary}"
    ));
    if !start_summary.contains(&format!("in-sync: {}", fixture.objects.len())) {
        bail!(
            "the first evaluation is not all in sync ({start_summary}); the benchmark needs a clean start"
        );
    }

    // One edit at a time, on objects spread through the list, each waited for.
    let mut samples = Vec::new();
    let stride = fixture.objects.len() / args.edits;
    for i in 0..args.edits {
        // Deployments and ConfigMaps in turn (they alternate in the list).
        let index = ((i * stride + stride / 2) & !1) + i % 2;
        let object = &fixture.objects[index.min(fixture.objects.len() - 1)];
        let edit = edit_args(object, i);
        let before = Instant::now();
        let sent = unix_now();
        cp.kubectl_run(&edit.iter().map(String::as_str).collect::<Vec<_>>(), None)?;
        let kubectl_done = before.elapsed().as_secs_f64();
        let (event, arrived, arrived_unix) = watch.event_for(object, Duration::from_secs(60))?;
        if event["newStatus"] != "drifted" {
            bail!(
                "edit {i} ({}): expected a drift event, got {event}",
                edit.join(" ")
            );
        }
        let accepted = accepted_at(cp, object, sent)?;
        samples.push(Sample {
            what: match edit[0].as_str() {
                "set" => "set image".to_owned(),
                other => other.to_owned(),
            },
            object: format!("{}/{}", object.kind, object.name),
            from_kubectl: arrived.duration_since(before).as_secs_f64(),
            from_server: accepted.map(|a| arrived_unix - a),
            kubectl: kubectl_done,
        });
        let s = samples.last().expect("just pushed");
        progress.step(&format!(
            "edit {:>2}: {:<9} {:<34} event {:>4.0} ms after kubectl started, {} after the server took it",
            i + 1,
            s.what,
            s.object,
            s.from_kubectl * 1000.0,
            s.from_server
                .map_or("?".to_owned(), |d| format!("{:.1} ms", d * 1000.0)),
        ));
    }

    // Idle: nothing changes; what does watching cost?
    progress.step(&format!("idle for {} s", args.idle));
    let audit_before = audit_lines(cp)?;
    let cpu_before = process_cpu(watch.pid())?;
    let idle_start = Instant::now();
    let deadline = idle_start + Duration::from_secs(args.idle);
    let mut unexpected = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match watch.events.recv_timeout(left) {
            Ok((line, _, _)) => unexpected.push(line),
            Err(_) => break,
        }
    }
    let idle_wall = idle_start.elapsed().as_secs_f64();
    let cpu = process_cpu(watch.pid())? - cpu_before;
    let (rss, hwm) = memory_kb(watch.pid())?;
    let requests = requests_since(cp, audit_before)?;
    let code = watch.stop()?;
    if code != Some(0) {
        bail!("watch did not stop cleanly on SIGTERM (exit {code:?})");
    }

    let from_kubectl = median(&samples.iter().map(|s| s.from_kubectl).collect::<Vec<_>>());
    let from_server: Vec<f64> = samples.iter().filter_map(|s| s.from_server).collect();
    let from_server_median = (!from_server.is_empty()).then(|| median(&from_server));
    let kubectl_median = median(&samples.iter().map(|s| s.kubectl).collect::<Vec<_>>());
    let cpu_percent = cpu / idle_wall * 100.0;
    let rss_mb = rss as f64 / 1024.0;
    let hwm_mb = hwm as f64 / 1024.0;

    println!();
    println!(
        "kubectl gitops watch benchmark: {} objects ({} Deployments, {} ConfigMaps) in {} files, \
         applied as Flux would; {} out-of-band edits",
        fixture.objects.len(),
        fixture.count("Deployment"),
        fixture.count("ConfigMap"),
        fixture.files.len(),
        samples.len()
    );
    println!(
        "kube-apiserver {} + etcd on loopback, {} cores, load average {}",
        cp.version,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!();
    println!("startup (first evaluation, watches open): {startup:.1} s");
    println!(
        "edit → event, median of {}: {:.0} ms from kubectl's start (kubectl itself: {:.0} ms), {} from \
         the server's acceptance (audit log)",
        samples.len(),
        from_kubectl * 1000.0,
        kubectl_median * 1000.0,
        from_server_median.map_or("?".to_owned(), |m| format!("{:.0} ms", m * 1000.0)),
    );
    println!(
        "idle over {idle_wall:.0} s: {cpu_percent:.2} % of one core, RSS {rss_mb:.0} MB (peak {hwm_mb:.0} MB)"
    );
    println!(
        "requests while idle: {}",
        if requests.is_empty() {
            "none".to_owned()
        } else {
            requests
                .iter()
                .map(|(v, n)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if !unexpected.is_empty() {
        println!("events while idle (none expected): {}", unexpected.len());
    }
    println!();
    println!("targets:");
    println!(
        "  {}",
        check(
            "median edit → event, from kubectl's start",
            from_kubectl * 1000.0,
            1000.0,
            "ms"
        )
    );
    println!("  {}", check("idle CPU", cpu_percent, 2.0, "% of one core"));
    println!(
        "  {} (the target is for 10000 objects; this run has {})",
        check("idle RSS", rss_mb, 150.0, "MB"),
        fixture.objects.len()
    );
    let only_watches = requests.keys().all(|verb| verb == "watch");
    println!(
        "  {} requests while idle: only WATCH",
        if only_watches { "ok  " } else { "MISS" }
    );
    println!();
    println!(
        "{}",
        json!({
            "benchmark": "watch",
            "objects": fixture.objects.len(),
            "edits": samples.len(),
            "startupSeconds": round3(startup),
            "medianEventSecondsFromKubectl": round3(from_kubectl),
            "medianEventSecondsFromServer": from_server_median.map(round3),
            "medianKubectlSeconds": round3(kubectl_median),
            "idleSeconds": round3(idle_wall),
            "idleCpuPercent": round3(cpu_percent),
            "rssMB": round3(rss_mb),
            "peakRssMB": round3(hwm_mb),
            "idleRequests": requests,
            "idleEvents": unexpected.len(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

struct Sample {
    what: String,
    object: String,
    /// Seconds from the start of the kubectl command to the event line.
    from_kubectl: f64,
    /// Seconds from the moment the API server completed the write to the event line.
    from_server: Option<f64>,
    kubectl: f64,
}

/// `ok   what: 66.00 ms (target ≤ 1000 ms)`: every target here is a ceiling.
fn check(what: &str, value: f64, target: f64, unit: &str) -> String {
    format!(
        "{} {what}: {value:.2} {unit} (target ≤ {target} {unit})",
        if value <= target { "ok  " } else { "MISS" },
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// The repository and the cluster.

struct Object {
    /// `deployment` or `configmap`, as kubectl names the resource.
    resource: &'static str,
    kind: &'static str,
    name: String,
}

struct Fixture {
    objects: Vec<Object>,
    files: Vec<String>,
    /// Name and `spec.path` of each Flux Kustomization.
    kustomizations: Vec<(String, String)>,
}

impl Fixture {
    fn count(&self, kind: &str) -> usize {
        self.objects.iter().filter(|o| o.kind == kind).count()
    }
}

/// `count` objects under `apps/part-NN/`, a Deployment and a ConfigMap per app file, Flux
/// labels for the part's Kustomization.
fn generate(repo: &Path, count: usize) -> Result<Fixture> {
    let parts = count.div_ceil(PER_KUSTOMIZATION);
    let mut fixture = Fixture {
        objects: Vec::new(),
        files: Vec::new(),
        kustomizations: (0..parts)
            .map(|p| (format!("apps-{p:02}"), format!("apps/part-{p:02}")))
            .collect(),
    };
    for (_, dir) in &fixture.kustomizations {
        fs::create_dir_all(repo.join(dir))?;
    }
    let mut app = 0;
    while fixture.objects.len() < count {
        let part = fixture.objects.len() / PER_KUSTOMIZATION;
        let (ks, dir) = &fixture.kustomizations[part];
        let name = format!("app-{app:05}");
        let labels = format!(
            "  labels:\n    app.kubernetes.io/name: {name}\n    kustomize.toolkit.fluxcd.io/name: {ks}\n    kustomize.toolkit.fluxcd.io/namespace: {NS}\n"
        );
        let mut text = format!(
            "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {NS}
{labels}spec:
  replicas: 2
  selector:
    matchLabels: {{app.kubernetes.io/name: {name}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {name}}}
    spec:
      containers:
        - name: app
          image: registry.example.com/bench/{name}:1.0.0
          ports:
            - containerPort: 8080
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
"
        );
        fixture.objects.push(Object {
            resource: "deployment",
            kind: "Deployment",
            name: name.clone(),
        });
        if fixture.objects.len() < count {
            let _ = write!(
                text,
                "---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {NS}
{labels}data:
  LOG_LEVEL: info
  FEATURE_FLAGS: checkout,search
"
            );
            fixture.objects.push(Object {
                resource: "configmap",
                kind: "ConfigMap",
                name: name.clone(),
            });
        }
        let file = format!("{dir}/{name}.yaml");
        fs::write(repo.join(&file), text)?;
        fixture.files.push(file);
        app += 1;
    }
    Ok(fixture)
}

/// What kustomize-controller would have done: every file applied server-side under its field
/// manager, then the Flux objects with a Ready status at HEAD.
fn apply_as_flux(cp: &ControlPlane, repo: &Path, fixture: &Fixture, head: &str) -> Result<()> {
    let chunk = fixture.files.len().div_ceil(APPLIERS).max(1);
    let mut children = Vec::new();
    for files in fixture.files.chunks(chunk) {
        let mut cmd = cp.kubectl();
        cmd.args([
            "apply",
            "--server-side",
            "--field-manager=kustomize-controller",
            "-n",
            NS,
        ]);
        for f in files {
            cmd.arg("-f").arg(repo.join(f));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        children.push(cmd.spawn().context("running kubectl apply")?);
    }
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl apply: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let mut flux = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: apps, namespace: {NS}}}
spec: {{url: '{REPO_URL}', interval: 1m, ref: {{branch: main}}}}
"
    );
    for (name, path) in &fixture.kustomizations {
        let _ = write!(
            flux,
            "---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: {name}, namespace: {NS}}}
spec: {{interval: 10m, prune: true, path: ./{path}, sourceRef: {{kind: GitRepository, name: apps}}}}
"
        );
    }
    cp.kubectl_run(&["apply", "--server-side", "-f", "-"], Some(&flux))?;
    let status = json!({"status": {
        "lastAppliedRevision": format!("main@sha1:{head}"),
        "lastAttemptedRevision": format!("main@sha1:{head}"),
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
            "message": format!("Applied revision: main@sha1:{head}"),
            "lastTransitionTime": "2026-01-05T10:01:00Z",
        }],
    }});
    for (name, _) in &fixture.kustomizations {
        cp.kubectl_run(
            &[
                "patch",
                "-n",
                NS,
                &format!("kustomization/{name}"),
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
    }
    Ok(())
}

/// The kubectl arguments of edit `i` on `object`: scale or set image for a Deployment, label or
/// patch for a ConfigMap, in turn.
fn edit_args(object: &Object, i: usize) -> Vec<String> {
    let target = format!("{}/{}", object.resource, object.name);
    let args: Vec<String> = match (object.kind, i / 2 % 2) {
        ("Deployment", 0) => vec!["scale".into(), target, "--replicas=3".into()],
        ("Deployment", _) => vec![
            "set".into(),
            "image".into(),
            target,
            "app=registry.example.com/bench/hotfix:9.9.9".into(),
        ],
        (_, 0) => vec![
            "label".into(),
            target,
            "team.example.com/owner=oncall".into(),
        ],
        _ => vec![
            "patch".into(),
            target,
            "--type=merge".into(),
            "-p".into(),
            r#"{"data":{"LOG_LEVEL":"debug"}}"#.into(),
        ],
    };
    let mut full = args;
    full.extend(["-n".into(), NS.into()]);
    full
}

/// When the API server completed the write to `object` made at or after `since` (Unix
/// seconds), from the audit log's `stageTimestamp`.
fn accepted_at(cp: &ControlPlane, object: &Object, since: f64) -> Result<Option<f64>> {
    let plural = format!("{}s", object.resource);
    let events = cp.audit_events_matching(|e| {
        matches!(e["verb"].as_str(), Some("patch" | "update"))
            && e["stage"] == "ResponseComplete"
            && e["objectRef"]["name"] == object.name.as_str()
            && e["objectRef"]["resource"] == plural.as_str()
            && e["user"]["username"] == "admin"
            && !e["requestURI"]
                .as_str()
                .unwrap_or_default()
                .contains("dryRun")
    })?;
    Ok(events
        .iter()
        .filter_map(|e| parse_time(e["stageTimestamp"].as_str()?))
        .rfind(|t| *t >= since.floor()))
}

/// `2026-01-05T10:00:00.123456Z` as Unix seconds.
fn parse_time(text: &str) -> Option<f64> {
    let (date, clock) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':');
    let (h, min) = (
        c.next()?.parse::<i64>().ok()?,
        c.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = c.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + secs)
}

fn audit_lines(cp: &ControlPlane) -> Result<usize> {
    Ok(cp.audit_events()?.len())
}

/// Our requests after the first `skip` audit events, by verb (a WATCH counts when it opens).
fn requests_since(cp: &ControlPlane, skip: usize) -> Result<BTreeMap<String, usize>> {
    let mut verbs = BTreeMap::new();
    for e in cp.audit_events()?.into_iter().skip(skip) {
        let ours = e["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kubectl-gitops/"));
        // One event per request: a watch's ResponseStarted, anything else's ResponseComplete.
        let counted = match e["verb"].as_str() {
            Some("watch") => e["stage"] == "ResponseStarted",
            _ => e["stage"] == "ResponseComplete",
        };
        if ours && counted {
            *verbs
                .entry(e["verb"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
        }
    }
    Ok(verbs)
}

/// CPU seconds (user + system) a process has used.
fn process_cpu(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    // SAFETY: sysconf has no side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11) + ticks(12)) / hz)
}

/// `VmRSS` and `VmHWM` of a process, kB.
fn memory_kb(pid: u32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// The running watch: its events as they arrive (line, arrival instant, arrival Unix time).
struct Watch {
    child: Child,
    events: Receiver<(Value, Instant, f64)>,
    said: Vec<String>,
}

impl Watch {
    fn start(plugin: &Path, cp: &ControlPlane, repo: &Path, cache: &Path) -> Result<Watch> {
        let mut cmd = Command::new(plugin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .args(["watch", "-n", NS, "-o", "json", "--kubeconfig"])
            .arg(&cp.kubeconfig)
            .env_remove("KUBECONFIG")
            .env("XDG_CACHE_HOME", cache)
            .current_dir(repo)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting kubectl-gitops watch")?;
        let (tx, events) = channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send((value, Instant::now(), unix_now())).is_err() {
                    break;
                }
            }
        });
        let (err_tx, said_rx) = channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  watch: {line}");
                // Read to the end even when nobody listens: a full pipe would block the watch.
                let _ = err_tx.send(line);
            }
        });
        let mut said = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = said_rx
                .recv_timeout(left)
                .context("watch ended or did not start watching within 30 minutes")?;
            if line.starts_with("watching ") {
                break;
            }
            said.push(line);
        }
        // The rest of stderr keeps being echoed by the reader thread.
        Ok(Watch {
            child,
            events,
            said,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next event about `object`; others are said (each edit is waited for).
    fn event_for(&mut self, object: &Object, within: Duration) -> Result<(Value, Instant, f64)> {
        let name = object.name.as_str();
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, at, unix) = self
                .events
                .recv_timeout(left)
                .with_context(|| format!("no event for {name} within {within:?}"))?;
            if event["object"]["name"] == name && event["object"]["kind"] == object.kind {
                return Ok((event, at, unix));
            }
            eprintln!("  (an event for another object: {event})");
        }
    }

    fn stop(mut self) -> Result<Option<i32>> {
        // SAFETY: signalling the child this program started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("watch did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
