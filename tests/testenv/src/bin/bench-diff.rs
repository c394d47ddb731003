//! `bench-diff`: times `kubectl gitops diff` against `kubectl diff --server-side` on the same
//! objects, applied as Flux applies them, with a share drifted out of band. Run by `bench/diff`.
//!
//! A benchmark is a command, not a timed test (STYLE.md, habit 11): it prints a table and a ratio
//! that a person can reproduce, and one JSON line for machines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testenv::bench::{loadavg, mark_kustomizations_ready, median, parse_number, round3, tail};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use testenv::{ControlPlane, Lifetime};

/// The namespace of the Flux objects, and of every app with `--namespaces 1`.
const NS: &str = "bench";
/// The URL of the generated repository: its `origin` remote and the GitRepository's `spec.url`.
const REPO_URL: &str = "https://git.example.com/bench/apps.git";
/// The test server's service range is a /24: Services past this many are headless.
const MAX_CLUSTER_IPS: usize = 200;
/// How many names one batched kubectl command takes.
const BATCH: usize = 100;
/// Parallel `kubectl apply` processes for the initial apply.
const APPLIERS: usize = 4;

const USAGE: &str = "\
usage: bench/diff [--objects N] [--drift-percent P] [--concurrency C] [--runs R]
                  [--kustomizations K] [--namespaces M] [--skip-kubectl-diff] [--only IDS]
                  [--plugin PATH] [--keep] [--clusters K]

  --objects N          namespaced objects to generate and apply (default 1000), plus one CRD
  --drift-percent P    share of them changed out of band before timing (default 5)
  --concurrency C      --concurrency for (b) and (e) (default 8)
  --runs R             timed runs of each command; the median and the minimum are shown (default 3)
  --skip-kubectl-diff  time only kubectl gitops diff (for large N)
  --kustomizations K   split the apps over K Flux Kustomizations (apps/part-NN), default 1
  --namespaces M       spread the apps evenly over M namespaces (bench-000, bench-001, ...) and
                       diff with -A; default 1 (namespace bench, diff with -n bench)
  --only IDS           time only these of the commands (a)..(e), e.g. --only a,d
  --plugin PATH        the kubectl-gitops binary (default <repo>/target/release/kubectl-gitops)
  --keep               afterwards, keep the cluster and repository until stdin closes or a line
                       is read (to try commands by hand, e.g. with -v)
  --clusters K         the fleet comparison instead of (a)..(e): K control planes, each with the
                       same apps and drift; times (f) kubectl gitops diff on one of them, (g) on
                       all K at once (--all-contexts), (h) K runs of it one after the other, and
                       (i) K runs of kubectl diff --server-side one after the other
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-diff: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug)]
struct Args {
    objects: usize,
    drift_percent: f64,
    concurrency: u16,
    runs: usize,
    skip_kubectl_diff: bool,
    /// Flux Kustomizations the apps are split over.
    kustomizations: usize,
    /// Namespaces the apps are spread over; above 1, our diff runs with `-A`.
    namespaces: usize,
    /// The commands to time, of `abcde`.
    only: String,
    plugin: PathBuf,
    keep: bool,
    /// Clusters of the fleet comparison (`--clusters`); 1: none.
    clusters: usize,
}

impl Args {
    fn parse() -> Result<Args> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        let mut args = Args {
            objects: 1000,
            drift_percent: 5.0,
            concurrency: 8,
            runs: 3,
            skip_kubectl_diff: false,
            only: "abcde".to_owned(),
            kustomizations: 1,
            namespaces: 1,
            plugin: target.join("release/kubectl-gitops"),
            keep: false,
            clusters: 1,
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
            match flag.as_str() {
                "--objects" => args.objects = parse_number(&flag, &value()?)?,
                "--drift-percent" => args.drift_percent = parse_number(&flag, &value()?)?,
                "--concurrency" => args.concurrency = parse_number(&flag, &value()?)?,
                "--runs" => args.runs = parse_number(&flag, &value()?)?,
                "--kustomizations" => {
                    args.kustomizations = parse_number(&flag, &value()?)?;
                }
                "--namespaces" => args.namespaces = parse_number(&flag, &value()?)?,
                "--plugin" => args.plugin = PathBuf::from(value()?),
                "--skip-kubectl-diff" => args.skip_kubectl_diff = true,
                "--only" => {
                    let ids: String = value()?.chars().filter(|c| *c != ',').collect();
                    if ids.is_empty() || !ids.chars().all(|c| "abcde".contains(c)) {
                        bail!("--only takes command ids of a, b, c, d, e, e.g. --only a,d");
                    }
                    args.only = ids;
                }
                "--keep" => args.keep = true,
                "--clusters" => args.clusters = parse_number(&flag, &value()?)?,
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        if !(1..=8).contains(&args.clusters) {
            bail!("--clusters must be from 1 to 8");
        }
        if args.objects == 0 || args.runs == 0 || args.concurrency == 0 {
            bail!("--objects, --runs and --concurrency must be at least 1");
        }
        if !(1..=100).contains(&args.kustomizations) || args.kustomizations * 10 > args.objects {
            bail!("--kustomizations must be from 1 to 100, with at least 10 objects each");
        }
        if !(1..=1000).contains(&args.namespaces) || args.namespaces * 10 > args.objects {
            bail!("--namespaces must be from 1 to 1000, with at least 10 objects each");
        }
        if !(0.0..=100.0).contains(&args.drift_percent) || args.drift_percent == 0.0 {
            bail!(
                "--drift-percent must be above 0 and at most 100: with no drift, both tools exit 0"
            );
        }
        Ok(args)
    }

    /// The command line that reproduces this run.
    fn command_line(&self) -> String {
        let mut line = format!(
            "bench/diff --objects {} --drift-percent {} --concurrency {} --runs {}",
            self.objects, self.drift_percent, self.concurrency, self.runs
        );
        if self.kustomizations != 1 {
            let _ = write!(line, " --kustomizations {}", self.kustomizations);
        }
        if self.namespaces != 1 {
            let _ = write!(line, " --namespaces {}", self.namespaces);
        }
        if self.skip_kubectl_diff {
            line.push_str(" --skip-kubectl-diff");
        }
        if self.only != "abcde" {
            let ids: Vec<String> = self.only.chars().map(String::from).collect();
            let _ = write!(line, " --only {}", ids.join(","));
        }
        if self.clusters != 1 {
            let _ = write!(line, " --clusters {}", self.clusters);
        }
        line
    }

    /// How our diff is scoped: `-n bench`, or `-A` when the apps are spread over namespaces.
    fn gitops_scope(&self) -> &'static [&'static str] {
        if self.namespaces == 1 {
            &["-n", NS]
        } else {
            &["-A"]
        }
    }

    /// How `kubectl diff` is scoped: `-n bench`, or by each manifest's own namespace.
    fn kubectl_scope(&self) -> &'static [&'static str] {
        if self.namespaces == 1 {
            &["-n", NS]
        } else {
            &[]
        }
    }

    /// Whether command `id` ((a) to (e)) is timed.
    fn wants(&self, id: char) -> bool {
        self.only.contains(id) && !(self.skip_kubectl_diff && "de".contains(id))
    }
}

/// Prints a setup step with the time since start, on stderr.
/// Times each of `benches` `runs` times, interleaved (one run of each, then the next), with
/// `cp` the control plane whose server CPU they count. Returns the load average before.
fn time_all(
    benches: &mut [Bench],
    runs: usize,
    cp: &ControlPlane,
    progress: &Progress,
) -> Result<String> {
    progress.step(&format!(
        "timing {} commands, {} runs each",
        benches.len(),
        runs
    ));
    let load_before = loadavg();
    for run in 0..runs {
        for bench in benches.iter_mut() {
            let sample = bench.run_once(cp)?;
            eprintln!(
                "          run {}/{} ({}) {:.2}s",
                run + 1,
                runs,
                bench.id,
                sample.wall
            );
            bench.samples.push(sample);
        }
    }
    Ok(load_before)
}

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
            "the plugin {} is missing; build it with `cargo build --release` (bench/diff does)",
            args.plugin.display()
        )
    })?;
    let progress = Progress(Instant::now());
    remove_stale_dirs();
    let work = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .context("creating a temp dir")?;

    progress.step("starting etcd + kube-apiserver");
    let cp = ControlPlane::start(&work.path().join("cluster"), Lifetime::TiedToThisProcess)?;
    let result = bench(&args, &plugin, &cp, work.path(), &progress);
    stop(&cp);
    result
}

/// Temp dirs are `<tmp>/<prefix><pid>-<random>`.
const DIR_PREFIX: &str = "kubectl-gitops-bench-";

/// Removes the temp dirs of earlier runs that were killed before they could clean up.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Stops the control plane before its directory is removed.
fn stop(cp: &ControlPlane) {
    for &pid in cp.pids() {
        // SAFETY: sending a signal to a process this program started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    for &pid in cp.pids() {
        // SAFETY: reaping our own child; a pid that is not our child just returns an error.
        unsafe {
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
    // `bench` holds the Flux objects, and the apps too unless they are spread out.
    let mut namespaces = vec![NS.to_owned()];
    namespaces.extend(
        app_namespaces(args.namespaces)
            .into_iter()
            .filter(|n| n != NS),
    );
    let manifest: String = namespaces
        .iter()
        .map(|n| format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n"))
        .collect();
    cp.kubectl_run(&["create", "-f", "-"], Some(&manifest))?;
    progress.step(&format!(
        "Flux and Argo CD CRDs installed, {} created",
        match namespaces.len() {
            1 => format!("namespace {NS}"),
            n => format!(
                "{n} namespaces ({NS} for Flux, {} .. {} for the apps)",
                namespaces[1],
                namespaces[n - 1]
            ),
        }
    ));

    let repo = work.join("repo");
    let fixture = generate(&repo, args.objects, args.kustomizations, args.namespaces)?;
    let head = testenv::init_bench_repo(&repo, REPO_URL)?;
    progress.step(&format!(
        "repository: {} objects + 1 CRD in {} files under apps/ for {} Kustomization(s), in {} \
         namespace(s), commit {}",
        fixture.objects.len(),
        fixture.files.len(),
        fixture.kustomizations.len(),
        args.namespaces,
        &head[..12]
    ));

    apply_as_flux(cp, &repo, &fixture, &head)?;
    progress.step(
        "applied with --server-side --field-manager=kustomize-controller, Kustomization(s) Ready",
    );

    let tools = Tools::new(cp, plugin, &repo, work, args)?;
    let scope = args.gitops_scope().join(" ");

    // The baseline: right after a clean apply, nothing has drifted. With -A the cluster-scoped
    // kinds are listed too, and the CRD (Flux-labelled like the apps) is in scope.
    let expected = fixture.objects.len() + usize::from(args.namespaces > 1);
    let base = tools.gitops_json(&["--server-side=true"])?;
    let in_sync = base.report["summary"]["inSync"].as_u64().unwrap_or(0) as usize;
    if base.code != Some(0) || in_sync != expected {
        eprintln!(
            "bench-diff: BUG: after a clean apply, `kubectl gitops diff {scope} --server-side=true` \
             exited {:?} with {in_sync} of {expected} objects in sync (expected exit 0, all in sync)",
            base.code,
        );
        eprintln!("summary: {}", base.report["summary"]);
        print_not_in_sync(&base.report, 5);
        eprintln!("stderr (end):\n{}", tail(&base.stderr, 30));
        return Ok(ExitCode::from(1));
    }
    progress.step(&format!(
        "baseline: in sync ({in_sync} objects, --server-side=true, {:.2}s)",
        base.wall.as_secs_f64()
    ));

    let drifted = drift(cp, &fixture, args.drift_percent)?;
    progress.step(&format!(
        "drifted {} objects out of band ({})",
        drifted.objects.len(),
        drifted.describe()
    ));

    // Untimed runs that check the answers and warm every cache (discovery, OpenAPI, page cache).
    let mut problems = Vec::new();
    let mut found = BTreeMap::new();
    for (id, mode) in [('a', "auto"), ('b', "true"), ('c', "false")] {
        if !args.wants(id) {
            continue;
        }
        let ran = tools.gitops_json(&[&format!("--server-side={mode}")])?;
        let reported = drifted_names(&ran.report);
        found.insert(mode, reported.len());
        if ran.code != Some(1) {
            problems.push(format!(
                "--server-side={mode}: exit {:?}, expected 1\n{}",
                ran.code,
                tail(&ran.stderr, 20)
            ));
        }
        let missed: Vec<_> = drifted.objects.difference(&reported).collect();
        let extra: Vec<_> = reported.difference(&drifted.objects).collect();
        if !missed.is_empty() || !extra.is_empty() {
            problems.push(format!(
                "--server-side={mode}: {} drifted reported, {} expected; missed {:?}; unexpected {:?}",
                reported.len(),
                drifted.objects.len(),
                first(&missed, 10),
                first(&extra, 10),
            ));
        }
    }
    let mut kubectl_found = None;
    if args.wants('d') || args.wants('e') {
        let (code, stdout) = tools.kubectl_diff_output(None)?;
        if code != Some(1) {
            bail!("kubectl diff exited {code:?} on drifted objects; expected 1");
        }
        kubectl_found = Some(
            stdout
                .lines()
                .filter(|l| l.starts_with("diff -u -N "))
                .count(),
        );
    }
    progress.step(&format!(
        "checked: kubectl gitops diff reports {} of {} drifted{}",
        found
            .iter()
            .map(|(mode, n)| format!("{n} (--server-side={mode})"))
            .collect::<Vec<_>>()
            .join(", "),
        drifted.objects.len(),
        kubectl_found
            .map(|n| format!("; kubectl diff shows {n} objects"))
            .unwrap_or_default()
    ));

    if args.clusters > 1 {
        return fleet::bench(
            args, plugin, cp, work, &repo, &fixture, &head, &drifted, progress,
        );
    }

    // The timed runs, interleaved so that a slow moment of the machine hits every command alike.
    let c = args.concurrency.to_string();
    let mut benches = vec![
        tools.gitops("a", &format!("kubectl gitops diff {scope}"), &[]),
        tools.gitops(
            "b",
            &format!("kubectl gitops diff {scope} --server-side=true --concurrency {c}"),
            &["--server-side=true", "--concurrency", &c],
        ),
        tools.gitops(
            "c",
            &format!("kubectl gitops diff {scope} --server-side=false"),
            &["--server-side=false"],
        ),
        tools.kubectl_diff("d", None),
        tools.kubectl_diff("e", Some(&c)),
    ];
    benches.retain(|b| args.wants(b.id.chars().next().expect("ids are one letter")));
    let load_before = time_all(&mut benches, args.runs, cp, progress)?;

    let env = Environment::read(cp, plugin, load_before)?;
    print_results(
        args,
        &fixture,
        &drifted,
        &env,
        &benches,
        &tools,
        kubectl_found,
    );
    if args.keep {
        eprintln!(
            "bench-diff: keeping the cluster (KUBECONFIG={}) and the repository ({}) until stdin \
             closes or a line is read",
            cp.kubeconfig.display(),
            repo.display()
        );
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    if !problems.is_empty() {
        println!();
        println!("PROBLEMS (kubectl gitops diff answered wrongly on the drifted objects):");
        for p in &problems {
            println!("  {p}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// The repository.

/// One generated object.
#[derive(Debug, Clone)]
struct Object {
    /// The kubectl resource name: `deployment`, `configmap`, `widget`, ...
    resource: &'static str,
    /// The kind, as reports name it.
    kind: &'static str,
    namespace: String,
    name: String,
}

impl Object {
    /// `Kind namespace/name`: how the drift checks tell objects apart.
    fn id(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug)]
struct Fixture {
    /// The namespaced objects, in app order.
    objects: Vec<Object>,
    /// The app files, relative to the repository.
    files: Vec<String>,
    crd_file: String,
    /// The Flux Kustomizations: name and `spec.path`.
    kustomizations: Vec<(String, String)>,
}

/// The namespaces the apps are spread over: `bench` alone, or `bench-000` .. for more.
fn app_namespaces(count: usize) -> Vec<String> {
    if count == 1 {
        vec![NS.to_owned()]
    } else {
        (0..count).map(|i| format!("{NS}-{i:03}")).collect()
    }
}

/// Writes `count` objects under `apps/` (one file per app), split in order over `parts` Flux
/// Kustomizations: `apps` itself for one, `apps/part-NN` for more. The CRD goes with the first.
/// The apps are spread in order over `namespaces` namespaces, each app's objects in one (the
/// Kustomizations stay in `bench`: their labels lead there from any namespace).
fn generate(repo: &Path, count: usize, parts: usize, namespaces: usize) -> Result<Fixture> {
    let namespace_names = app_namespaces(namespaces);
    let kustomizations: Vec<(String, String)> = if parts == 1 {
        vec![("apps".to_owned(), "apps".to_owned())]
    } else {
        (0..parts)
            .map(|p| (format!("apps-{p:02}"), format!("apps/part-{p:02}")))
            .collect()
    };
    for (_, dir) in &kustomizations {
        let dir = repo.join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let crd_file = format!("{}/crd-widgets.yaml", kustomizations[0].1);
    fs::write(repo.join(&crd_file), crd(&kustomizations[0].0))?;
    let mut objects = Vec::new();
    let mut files = Vec::new();
    let mut services = 0;
    let mut app = 0;
    while objects.len() < count {
        let (ks, dir) = &kustomizations[objects.len() * parts / count];
        let ns = &namespace_names[objects.len() * namespaces / count];
        let name = format!("app-{app:04}");
        let mut docs = app_objects(&name, app, services < MAX_CLUSTER_IPS, ks, ns);
        docs.truncate(count - objects.len());
        services += docs.iter().filter(|(o, _)| o.kind == "Service").count();
        let file = format!("{dir}/{name}.yaml");
        let text: String = docs.iter().map(|(_, y)| format!("---\n{y}")).collect();
        fs::write(repo.join(&file), text)?;
        objects.extend(docs.into_iter().map(|(o, _)| o));
        files.push(file);
        app += 1;
    }
    Ok(Fixture {
        objects,
        files,
        crd_file,
        kustomizations,
    })
}

/// The labels kustomize-controller puts on what Kustomization `ks` applies, as YAML lines.
fn flux_labels(ks: &str, indent: &str) -> String {
    format!(
        "{indent}kustomize.toolkit.fluxcd.io/name: {ks}\n\
         {indent}kustomize.toolkit.fluxcd.io/namespace: {NS}\n"
    )
}

/// `metadata:` of a namespaced object of app `app`, labelled as kustomize-controller labels.
fn metadata(name: &str, app: &str, ks: &str, ns: &str) -> String {
    format!(
        "metadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: {app}\n    app.kubernetes.io/part-of: bench\n{}",
        flux_labels(ks, "    ")
    )
}

/// The objects of one app, about eight: the shares of a typical service repository.
fn app_objects(
    app: &str,
    index: usize,
    cluster_ip: bool,
    ks: &str,
    ns: &str,
) -> Vec<(Object, String)> {
    let meta = metadata(app, app, ks, ns);
    let obj = |resource, kind, name: &str| Object {
        resource,
        kind,
        namespace: ns.to_owned(),
        name: name.to_owned(),
    };
    // Quantities written the way people write them: the server stores them canonically.
    let (cpu, memory) = [
        ("0.5", "1Gi"),
        ("0.25", "512Mi"),
        ("1", "256Mi"),
        ("1.5", "2Gi"),
    ][index % 4];
    let sidecar = if index % 2 == 1 {
        "        - name: proxy
          image: envoyproxy/envoy:v1.31.2
          args: [--config-path, /etc/envoy/envoy.yaml]
          ports:
            - containerPort: 15001
          resources:
            requests: {cpu: 100m, memory: 128Mi}
"
    } else {
        ""
    };
    let deployment = format!(
        "apiVersion: apps/v1
kind: Deployment
{meta}spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {app}
    spec:
      serviceAccountName: {app}
      containers:
        - name: app
          image: registry.example.com/bench/{app}:1.{minor}.0
          ports:
            - name: http
              containerPort: 8080
            - name: metrics
              containerPort: 9090
          env:
            - name: LOG_LEVEL
              value: info
            - name: CONFIG_DIR
              value: /etc/app
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {app}
                  key: password
          resources:
            requests:
              cpu: {cpu}
              memory: {memory}
            limits:
              cpu: 2
              memory: 4Gi
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
          livenessProbe:
            tcpSocket:
              port: 8080
            initialDelaySeconds: 15
          volumeMounts:
            - name: config
              mountPath: /etc/app
{sidecar}      volumes:
        - name: config
          configMap:
            name: {app}
",
        replicas = 2 + index % 3,
        minor = index % 20,
    );
    let headless = if cluster_ip {
        ""
    } else {
        "  clusterIP: None\n"
    };
    let service = format!(
        "apiVersion: v1
kind: Service
{meta}spec:
{headless}  selector:
    app.kubernetes.io/name: {app}
  ports:
    - name: http
      port: 80
      targetPort: http
    - name: metrics
      port: 9090
      targetPort: 9090
"
    );
    let configmap = format!(
        "apiVersion: v1
kind: ConfigMap
{meta}data:
  LOG_LEVEL: info
  FEATURE_FLAGS: search,checkout
  TIMEOUT: 30s
  app.properties: |
    server.port=8080
    app.name={app}
    cache.size={cache}
",
        cache = 64 << (index % 4),
    );
    let secret = format!(
        "apiVersion: v1
kind: Secret
{meta}type: Opaque
stringData:
  username: {app}
  password: bench-{index:08x}-not-a-secret
"
    );
    let account = format!("apiVersion: v1\nkind: ServiceAccount\n{meta}");
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
{meta}rules:
  - apiGroups: [\"\"]
    resources: [configmaps, secrets]
    verbs: [get, list, watch]
  - apiGroups: [bench.example.com]
    resources: [widgets]
    verbs: [get, list]
"
    );
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
{meta}roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {app}
subjects:
  - kind: ServiceAccount
    name: {app}
    namespace: {ns}
"
    );
    let widget = format!(
        "apiVersion: bench.example.com/v1
kind: Widget
{meta}spec:
  image: registry.example.com/bench/{app}-worker:2.{minor}.1
  replicas: {replicas}
  tier: {tier}
  ports:
    - name: http
      port: 8080
    - name: grpc
      port: 9000
  tags: [bench, {app}]
",
        minor = index % 7,
        replicas = 1 + index % 4,
        tier = ["frontend", "backend", "batch"][index % 3],
    );
    let mut docs = vec![
        (obj("deployment", "Deployment", app), deployment),
        (obj("service", "Service", app), service),
        (obj("configmap", "ConfigMap", app), configmap),
        (obj("secret", "Secret", app), secret),
        (obj("serviceaccount", "ServiceAccount", app), account),
        (obj("role", "Role", app), role),
        (obj("rolebinding", "RoleBinding", app), binding),
        (obj("widget", "Widget", app), widget),
    ];
    if index.is_multiple_of(3) {
        let name = format!("{app}-nginx");
        let extra = format!(
            "apiVersion: v1
kind: ConfigMap
{meta}data:
  nginx.conf: |
    worker_processes 2;
    events {{ worker_connections 1024; }}
    http {{ server {{ listen 8081; location / {{ proxy_pass http://127.0.0.1:8080; }} }} }}
  mime.types: |
    types {{ text/html html; application/json json; }}
",
            meta = metadata(&name, app, ks, ns)
        );
        docs.insert(3, (obj("configmap", "ConfigMap", &name), extra));
    }
    docs
}

/// A namespaced CRD with a structural schema: a list map, a set, defaults and an enum.
fn crd(ks: &str) -> String {
    let labels = flux_labels(ks, "    ");
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.bench.example.com
  labels:
{labels}spec:
  group: bench.example.com
  names:
    kind: Widget
    listKind: WidgetList
    plural: widgets
    singular: widget
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {{}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [image]
              properties:
                image:
                  type: string
                replicas:
                  type: integer
                  minimum: 0
                  default: 1
                tier:
                  type: string
                  enum: [frontend, backend, batch]
                ports:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [name]
                  items:
                    type: object
                    required: [name, port]
                    properties:
                      name:
                        type: string
                      port:
                        type: integer
                      protocol:
                        type: string
                        default: TCP
                tags:
                  type: array
                  x-kubernetes-list-type: set
                  items:
                    type: string
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"
    )
}

// ---------------------------------------------------------------------------------------------
// The cluster.

/// What kustomize-controller would have done: the CRD first, then every app, applied server-side
/// under its field manager (each object names its namespace); then the Flux objects with a Ready
/// status at HEAD.
fn apply_as_flux(cp: &ControlPlane, repo: &Path, fixture: &Fixture, head: &str) -> Result<()> {
    let file = |f: &str| repo.join(f).display().to_string();
    let apply = [
        "apply",
        "--server-side",
        "--field-manager=kustomize-controller",
    ];
    let mut args = apply.to_vec();
    let crd_path = file(&fixture.crd_file);
    args.extend(["-f", &crd_path]);
    cp.kubectl_run(&args, None)?;
    cp.kubectl_run(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/widgets.bench.example.com",
        ],
        None,
    )?;

    // A few kubectl processes at once: each applies its files one object after another.
    let chunk = fixture.files.len().div_ceil(APPLIERS);
    let mut children = Vec::new();
    for files in fixture.files.chunks(chunk.max(1)) {
        let mut cmd = cp.kubectl();
        cmd.args(apply);
        for f in files {
            cmd.arg("-f").arg(file(f));
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
metadata:
  name: apps
  namespace: {NS}
spec:
  url: {REPO_URL}
  interval: 1m
  ref:
    branch: main
"
    );
    for (name, path) in &fixture.kustomizations {
        let _ = write!(
            flux,
            "---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: {NS}
spec:
  interval: 10m
  prune: true
  path: ./{path}
  sourceRef:
    kind: GitRepository
    name: apps
"
        );
    }
    cp.kubectl_run(&["apply", "--server-side", "-f", "-"], Some(&flux))?;
    mark_kustomizations_ready(
        cp,
        NS,
        fixture.kustomizations.iter().map(|(name, _)| name.as_str()),
        head,
    )
}

/// The objects changed out of band, as `Kind namespace/name`.
struct Drifted {
    objects: BTreeSet<String>,
    counts: Vec<(&'static str, usize)>,
}

impl Drifted {
    fn describe(&self) -> String {
        self.counts
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Changes `percent` % of the objects with ordinary kubectl commands, picked evenly through the
/// app list, each object once.
fn drift(cp: &ControlPlane, fixture: &Fixture, percent: f64) -> Result<Drifted> {
    let total = ((fixture.objects.len() as f64) * percent / 100.0).round() as usize;
    let total = total.max(1);
    // (what, eligible kinds)
    let actions: [(&str, &[&str]); 5] = [
        ("kubectl scale", &["Deployment"]),
        ("kubectl set image", &["Deployment"]),
        ("kubectl label", &["ServiceAccount", "Role", "Widget"]),
        ("kubectl annotate", &["Service", "Secret", "RoleBinding"]),
        ("kubectl patch (ConfigMap value)", &["ConfigMap"]),
    ];
    let mut used = BTreeSet::new();
    let mut objects = BTreeSet::new();
    let mut counts = Vec::new();
    for (i, (what, kinds)) in actions.iter().enumerate() {
        let want = total / actions.len() + usize::from(i < total % actions.len());
        let candidates: Vec<usize> = (0..fixture.objects.len())
            .filter(|&j| kinds.contains(&fixture.objects[j].kind) && !used.contains(&j))
            .collect();
        let want = want.min(candidates.len());
        if want == 0 {
            continue;
        }
        let stride = candidates.len() / want;
        let picked: Vec<&Object> = (0..want)
            .map(|k| candidates[k * stride + stride / 2])
            .inspect(|&j| {
                used.insert(j);
            })
            .map(|j| &fixture.objects[j])
            .collect();
        for o in &picked {
            objects.insert(o.id());
        }
        counts.push((*what, picked.len()));
        apply_drift(cp, i, &picked)?;
    }
    Ok(Drifted { objects, counts })
}

fn apply_drift(cp: &ControlPlane, action: usize, picked: &[&Object]) -> Result<()> {
    if action == 4 {
        for o in picked {
            cp.kubectl_run(
                &[
                    "patch",
                    "-n",
                    &o.namespace,
                    "configmap",
                    &o.name,
                    "--type=merge",
                    "-p",
                    r#"{"data":{"LOG_LEVEL":"debug"}}"#,
                ],
                None,
            )?;
        }
        return Ok(());
    }
    // One kubectl command names objects of one namespace.
    let mut by_namespace: BTreeMap<&str, Vec<&Object>> = BTreeMap::new();
    for o in picked {
        by_namespace.entry(&o.namespace).or_default().push(o);
    }
    for (ns, batch) in by_namespace
        .iter()
        .flat_map(|(ns, objects)| objects.chunks(BATCH).map(move |b| (*ns, b)))
    {
        let names: Vec<String> = batch
            .iter()
            .map(|o| format!("{}/{}", o.resource, o.name))
            .collect();
        let mut args: Vec<&str> = match action {
            0 => vec!["scale", "--replicas=7"],
            1 => vec!["set", "image"],
            2 => vec!["label"],
            _ => vec!["annotate"],
        };
        args.extend(["-n", ns]);
        args.extend(names.iter().map(String::as_str));
        match action {
            0 => {}
            1 => args.push("app=registry.example.com/bench/hotfix:9.9.9"),
            2 => args.push("team.example.com/owner=oncall"),
            _ => args.push("team.example.com/note=changed by hand"),
        }
        cp.kubectl_run(&args, None)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tools and their runs.

/// How the tools are invoked: the same kubeconfig, caches in the bench's temp dir, the
/// repository as working directory, no `KUBECONFIG` or `GIT_*` from the caller.
struct Tools {
    plugin: PathBuf,
    kubeconfig: PathBuf,
    repo: PathBuf,
    gitops_cache: PathBuf,
    kubectl_cache: PathBuf,
    stderr_file: PathBuf,
    /// `-n bench` or `-A` ([`Args::gitops_scope`]).
    gitops_scope: &'static [&'static str],
    /// `-n bench` or nothing ([`Args::kubectl_scope`]).
    kubectl_scope: &'static [&'static str],
}

/// A JSON run of ours.
struct JsonRun {
    code: Option<i32>,
    report: Value,
    stderr: String,
    wall: Duration,
}

impl Tools {
    fn new(
        cp: &ControlPlane,
        plugin: &Path,
        repo: &Path,
        work: &Path,
        args: &Args,
    ) -> Result<Tools> {
        let tools = Tools {
            plugin: plugin.to_path_buf(),
            kubeconfig: cp.kubeconfig.clone(),
            repo: repo.to_path_buf(),
            gitops_cache: work.join("cache/gitops"),
            kubectl_cache: work.join("cache/kubectl"),
            stderr_file: work.join("stderr.txt"),
            gitops_scope: args.gitops_scope(),
            kubectl_scope: args.kubectl_scope(),
        };
        fs::create_dir_all(&tools.gitops_cache)?;
        fs::create_dir_all(&tools.kubectl_cache)?;
        Ok(tools)
    }

    fn hermetic(&self, cmd: &mut Command) {
        cmd.current_dir(&self.repo).env_remove("KUBECONFIG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
    }

    fn gitops_command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(&self.plugin);
        self.hermetic(&mut cmd);
        cmd.env("XDG_CACHE_HOME", &self.gitops_cache)
            .arg("diff")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(self.gitops_scope)
            .args(extra);
        cmd
    }

    fn kubectl_diff_command(&self, concurrency: Option<&str>) -> Command {
        let mut cmd = Command::new("kubectl");
        self.hermetic(&mut cmd);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.kubectl_cache)
            .args(kubectl_diff_args(concurrency))
            .arg(self.repo.join("apps"))
            .args(self.kubectl_scope);
        cmd
    }

    fn gitops_json(&self, extra: &[&str]) -> Result<JsonRun> {
        let mut cmd = self.gitops_command(extra);
        cmd.args(["-o", "json"]).stdin(Stdio::null());
        let started = Instant::now();
        let out = cmd.output().context("running kubectl-gitops")?;
        let wall = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            json!({"unparsed": format!("{e}: {}", tail(&String::from_utf8_lossy(&out.stdout), 5))})
        });
        Ok(JsonRun {
            code: out.status.code(),
            report,
            stderr,
            wall,
        })
    }

    fn kubectl_diff_output(&self, concurrency: Option<&str>) -> Result<(Option<i32>, String)> {
        let out = self
            .kubectl_diff_command(concurrency)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl diff")?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    fn gitops(&self, id: &'static str, label: &str, extra: &[&str]) -> Bench {
        Bench {
            id,
            label: label.to_owned(),
            command: self.gitops_command(extra),
            stderr_file: self.stderr_file.clone(),
            samples: Vec::new(),
        }
    }

    fn kubectl_diff(&self, id: &'static str, concurrency: Option<&str>) -> Bench {
        let mut label = kubectl_diff_args(concurrency).join(" ");
        label = format!("kubectl {label} <repo>/apps");
        for arg in self.kubectl_scope {
            let _ = write!(label, " {arg}");
        }
        Bench {
            id,
            label,
            command: self.kubectl_diff_command(concurrency),
            stderr_file: self.stderr_file.clone(),
            samples: Vec::new(),
        }
    }

    /// The exact command, runnable by hand (paths of this run's temp dir included).
    fn shell_line(&self, cmd: &Command) -> String {
        let mut line = format!("cd {} && ", self.repo.display());
        if cmd.get_program() == self.plugin.as_os_str() {
            let _ = write!(line, "XDG_CACHE_HOME={} ", self.gitops_cache.display());
        }
        line.push_str(&cmd.get_program().to_string_lossy());
        for arg in cmd.get_args() {
            let arg = arg.to_string_lossy();
            if arg.contains(' ') {
                let _ = write!(line, " '{arg}'");
            } else {
                let _ = write!(line, " {arg}");
            }
        }
        line
    }
}

fn kubectl_diff_args(concurrency: Option<&str>) -> Vec<&str> {
    let mut args = vec![
        "diff",
        "--server-side",
        "--field-manager=kustomize-controller",
        "--force-conflicts",
    ];
    if let Some(c) = concurrency {
        args.extend(["--concurrency", c]);
    }
    args.extend(["-R", "-f"]);
    args
}

/// One timed command and its samples.
struct Bench {
    id: &'static str,
    label: String,
    command: Command,
    stderr_file: PathBuf,
    samples: Vec<Sample>,
}

struct Sample {
    wall: f64,
    /// Peak resident set of the process (or of its largest waited-for child), MB.
    max_rss_mb: f64,
    /// Peak resident set of the process alone (VmHWM, polled), MB.
    own_rss_mb: f64,
    /// User + system CPU of the process and its children, s.
    client_cpu: f64,
    /// CPU used meanwhile by kube-apiserver and etcd, s.
    server_cpu: f64,
}

impl Bench {
    /// Runs once with output to /dev/null; both tools must exit 1 (differences found).
    fn run_once(&mut self, cp: &ControlPlane) -> Result<Sample> {
        let stderr = fs::File::create(&self.stderr_file)?;
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let server_before = server_cpu(cp);
        let started = Instant::now();
        let child = self.command.spawn().context("starting the command")?;
        let pid = child.id() as libc::pid_t;
        // ru_maxrss also counts children (kubectl kustomize): watch the process's own VmHWM, which
        // only grows, until it exits.
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut peak_kb = 0u64;
                while !done.load(Ordering::Relaxed) {
                    if let Some(kb) = vm_hwm_kb(pid) {
                        peak_kb = peak_kb.max(kb);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak_kb
            })
        };
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child, once; std's Child is dropped without waiting.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let wall = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let own_kb = watcher.join().expect("the VmHWM watcher does not panic");
        drop(child);
        if waited != pid {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        let server = server_cpu(cp) - server_before;
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        if code != Some(1) {
            let text = fs::read_to_string(&self.stderr_file).unwrap_or_default();
            bail!(
                "({}) {} exited {code:?} (status {status}), expected 1 (differences found):\n{}",
                self.id,
                self.label,
                tail(&text, 20)
            );
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok(Sample {
            wall,
            max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
            own_rss_mb: own_kb as f64 / 1024.0,
            client_cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            server_cpu: server,
        })
    }

    fn walls(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.wall).collect()
    }

    fn median_wall(&self) -> f64 {
        median(&self.walls())
    }

    fn min_wall(&self) -> f64 {
        self.walls().into_iter().fold(f64::INFINITY, f64::min)
    }

    /// The largest ru_maxrss: the process or any child it waited for.
    fn peak_rss(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.max_rss_mb)
            .fold(0.0, f64::max)
    }

    /// The largest VmHWM of the process itself.
    fn peak_own_rss(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.own_rss_mb)
            .fold(0.0, f64::max)
    }

    fn median_of(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(&self.samples.iter().map(f).collect::<Vec<_>>())
    }
}

/// `VmHWM` of a running process, kB; None once it has exited.
fn vm_hwm_kb(pid: libc::pid_t) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds used so far by kube-apiserver and etcd.
fn server_cpu(cp: &ControlPlane) -> f64 {
    // SAFETY: sysconf has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    cp.pids()
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised name, from field 3 (state): utime is 14, stime 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Environment {
    kubectl: String,
    plugin: String,
    cores: usize,
    kube_apiserver: String,
    /// `/proc/loadavg`'s 1-, 5- and 15-minute averages before and after the timed runs: other
    /// work on the machine shows here.
    load: [String; 2],
}

impl Environment {
    fn read(cp: &ControlPlane, plugin: &Path, load_before: String) -> Result<Environment> {
        let kubectl: Value =
            serde_json::from_str(&cp.kubectl_run(&["version", "--client", "-o", "json"], None)?)
                .unwrap_or_default();
        let out = Command::new(plugin)
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .context("running kubectl-gitops version")?;
        Ok(Environment {
            kubectl: kubectl["clientVersion"]["gitVersion"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            plugin: String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("unknown")
                .trim()
                .to_owned(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kube_apiserver: cp.version.clone(),
            load: [load_before, loadavg()],
        })
    }
}

fn print_results(
    args: &Args,
    fixture: &Fixture,
    drifted: &Drifted,
    env: &Environment,
    benches: &[Bench],
    tools: &Tools,
    kubectl_found: Option<usize>,
) {
    let by_id = |id: &str| benches.iter().find(|b| b.id == id);
    let d = by_id("d").map(Bench::median_wall);
    let e = by_id("e").map(Bench::median_wall);
    let ratio = |base: Option<f64>, b: &Bench| base.map(|m| m / b.median_wall());
    let show_ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.1}x"));

    println!();
    println!(
        "kubectl gitops diff benchmark: {} objects + 1 CRD in {} files, in {} namespace(s) under \
         {} Kustomization(s), {} drifted out of band ({})",
        fixture.objects.len(),
        fixture.files.len() + 1,
        args.namespaces,
        fixture.kustomizations.len(),
        drifted.objects.len(),
        drifted.describe()
    );
    println!(
        "kube-apiserver {} + etcd on loopback, kubectl {}, {}, {} cores; {} runs each, output to /dev/null",
        env.kube_apiserver, env.kubectl, env.plugin, env.cores, args.runs
    );
    println!(
        "load average (1, 5, 15 min): {} before the timed runs, {} after",
        env.load[0], env.load[1]
    );
    if let Some(n) = kubectl_found {
        println!(
            "kubectl diff shows {n} of the {} drifted objects (labels and annotations added by \
             another manager survive its dry run)",
            drifted.objects.len()
        );
    }
    println!();
    let c = args.concurrency;
    let rows: Vec<[String; 9]> = benches
        .iter()
        .map(|b| {
            [
                format!("({}) {}", b.id, b.label),
                format!("{:.2}", b.median_wall()),
                format!("{:.2}", b.min_wall()),
                show_ratio(ratio(d, b)),
                show_ratio(ratio(e, b)),
                format!("{:.0} ({:.0})", b.peak_own_rss(), b.peak_rss()),
                format!("{:.2}", b.median_of(|s| s.client_cpu)),
                format!("{:.2}", b.median_of(|s| s.server_cpu)),
                b.walls()
                    .iter()
                    .map(|w| format!("{w:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    let header = [
        "command".to_owned(),
        "median s".to_owned(),
        "min s".to_owned(),
        "vs (d)".to_owned(),
        "vs (e)".to_owned(),
        "peak RSS MB (+children)".to_owned(),
        "client CPU s".to_owned(),
        "server CPU s".to_owned(),
        "runs s".to_owned(),
    ];
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String; 9]| {
        let mut text = format!("{:<w$}", cells[0], w = widths[0]);
        for (cell, w) in cells.iter().zip(widths).skip(1).take(7) {
            let _ = write!(text, "  {cell:>w$}");
        }
        let _ = write!(text, "  {}", cells[8]);
        text
    };
    println!("{}", line(&header));
    for row in &rows {
        println!("{}", line(row));
    }
    println!();
    println!(
        "vs (d), vs (e): median of (d) or (e) / median of the row (how many times faster). Peak RSS: \
         the process's own VmHWM (polled every 10 ms); in brackets ru_maxrss from wait4, the \
         largest of the process and the children it waited for (kubectl kustomize; diff for \
         kubectl diff). Client CPU: user + system of the process and its children. Server CPU: \
         kube-apiserver + etcd during the run."
    );

    // The targets of the issue, where this run can speak to them.
    let a = by_id("a");
    let b = by_id("b");
    let cc = by_id("c");
    let mut checks = Vec::new();
    if let (Some(a), Some(d)) = (a, d) {
        checks.push(check(
            "auto >= 10x faster than kubectl diff --server-side",
            d / a.median_wall(),
            10.0,
            "",
        ));
    }
    if let (Some(a), Some(e)) = (a, e) {
        let note = if c == 16 {
            String::new()
        } else {
            format!(" (measured against --concurrency {c}; the target is stated at 16)")
        };
        checks.push(check(
            "auto >= 5x faster than kubectl diff --server-side --concurrency 16",
            e / a.median_wall(),
            5.0,
            &note,
        ));
    }
    if let (Some(b), Some(e)) = (b, e) {
        checks.push(check(
            &format!("true >= 1.5x faster than kubectl diff at the same concurrency ({c})"),
            e / b.median_wall(),
            1.5,
            "",
        ));
    }
    if let (Some(cc), Some(d)) = (cc, d) {
        checks.push(check(
            "false >= 20x faster than kubectl diff --server-side",
            d / cc.median_wall(),
            20.0,
            "",
        ));
    }
    if let Some(a) = a {
        let rss = a.peak_own_rss();
        let with_children = a.peak_rss();
        // Two targets: one namespace at 10000 objects, and -A over 200 namespaces at 20000.
        let (limit, objects, namespaces) = if args.namespaces == 1 {
            (300.0, 10_000, 1)
        } else {
            (400.0, 20_000, 200)
        };
        let at = if fixture.objects.len() >= objects && args.namespaces >= namespaces {
            String::new()
        } else {
            format!(
                " (measured at N={} in {} namespace(s); the target is stated at {objects} in \
                 {namespaces})",
                fixture.objects.len(),
                args.namespaces
            )
        };
        checks.push(format!(
            "{} peak memory of auto < {limit:.0} MB: {rss:.0} MB; {with_children:.0} MB counting \
             its kubectl kustomize child{at}",
            if rss < limit { "PASS" } else { "FAIL" },
        ));
    }
    println!();
    println!("targets:");
    for line in &checks {
        println!("  {line}");
    }

    println!();
    println!("reproduce: {}", args.command_line());
    println!("commands (this run's temp paths; removed at exit):");
    for b in benches {
        println!("  ({}) {}", b.id, tools.shell_line(&b.command));
    }

    let results: Vec<Value> = benches
        .iter()
        .map(|b| {
            let mut r = json!({
                "id": b.id,
                "command": b.label,
                "medianSeconds": round3(b.median_wall()),
                "minSeconds": round3(b.min_wall()),
                "runsSeconds": b.walls().into_iter().map(round3).collect::<Vec<_>>(),
                "clientCpuSeconds": round3(b.median_of(|s| s.client_cpu)),
                "serverCpuSeconds": round3(b.median_of(|s| s.server_cpu)),
                "fasterThanKubectlDiff": ratio(d, b).map(round3),
                "fasterThanKubectlDiffConcurrency": ratio(e, b).map(round3),
            });
            r["peakRssMB"] = json!(round3(b.peak_own_rss()));
            r["peakRssWithChildrenMB"] = json!(round3(b.peak_rss()));
            r
        })
        .collect();
    let doc = json!({
        "benchmark": "kubectl-gitops-diff",
        "objects": fixture.objects.len(),
        "files": fixture.files.len() + 1,
        "namespaces": args.namespaces,
        "kustomizations": fixture.kustomizations.len(),
        "drifted": drifted.objects.len(),
        "driftPercent": args.drift_percent,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "kubeApiserver": env.kube_apiserver,
        "kubectl": env.kubectl,
        "plugin": env.plugin,
        "cores": env.cores,
        "loadBefore": env.load[0],
        "loadAfter": env.load[1],
        "kubectlDiffShows": kubectl_found,
        "command": args.command_line(),
        "results": results,
    });
    println!();
    println!("{doc}");
}

fn check(what: &str, ratio: f64, target: f64, note: &str) -> String {
    format!(
        "{} {what}: {ratio:.1}x{note}",
        if ratio >= target { "PASS" } else { "FAIL" }
    )
}

// ---------------------------------------------------------------------------------------------
// Reading our report.

/// `Kind namespace/name` of every drifted item of a DriftReport.
fn drifted_names(report: &Value) -> BTreeSet<String> {
    report["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] == "drifted")
        .map(|i| {
            format!(
                "{} {}/{}",
                i["object"]["kind"].as_str().unwrap_or("?"),
                i["object"]["namespace"].as_str().unwrap_or("-"),
                i["object"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn print_not_in_sync(report: &Value, limit: usize) {
    let items: Vec<&Value> = report["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] != "in-sync" && i["status"] != "no-source")
        .take(limit)
        .collect();
    if items.is_empty() {
        if let Some(u) = report.get("unparsed") {
            eprintln!("report not parsed: {u}");
        }
        return;
    }
    eprintln!("first {} items not in sync:", items.len());
    for item in items {
        eprintln!("{}", serde_json::to_string_pretty(item).unwrap_or_default());
    }
}

fn first<T: std::fmt::Debug>(items: &[T], n: usize) -> Vec<&T> {
    items.iter().take(n).collect()
}

// ---------------------------------------------------------------------------------------------
// `--clusters K`: one repository on K clusters.

mod fleet {
    use super::*;

    /// Starts K-1 more control planes, gives each the same apps and the same drift as the first,
    /// checks that `--all-contexts` finds the drift in each, then times (f) one context, (g) all
    /// at once, (h) one after the other, (i) kubectl diff one after the other.
    #[allow(clippy::too_many_arguments)]
    pub fn bench(
        args: &Args,
        plugin: &Path,
        first: &ControlPlane,
        work: &Path,
        repo: &Path,
        fixture: &Fixture,
        head: &str,
        drifted: &Drifted,
        progress: &Progress,
    ) -> Result<ExitCode> {
        let mut others = Vec::new();
        let result = (|| {
            for i in 1..args.clusters {
                progress.step(&format!(
                    "starting control plane {} of {}",
                    i + 1,
                    args.clusters
                ));
                let cp = ControlPlane::start(
                    &work.join(format!("cluster-{i}")),
                    Lifetime::TiedToThisProcess,
                )?;
                others.push(cp);
                let cp = others.last().expect("just pushed");
                cp.install_crds()?;
                let manifest: String = std::iter::once(NS.to_owned())
                    .chain(app_namespaces(args.namespaces))
                    .collect::<BTreeSet<_>>()
                    .iter()
                    .map(|n| {
                        format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n")
                    })
                    .collect();
                cp.kubectl_run(&["create", "-f", "-"], Some(&manifest))?;
                apply_as_flux(cp, repo, fixture, head)?;
                let theirs = drift(cp, fixture, args.drift_percent)?;
                if theirs.objects != drifted.objects {
                    bail!("cluster {} drifted other objects than the first", i + 1);
                }
                progress.step(&format!(
                    "cluster {}: applied as Flux would, {} objects drifted",
                    i + 1,
                    theirs.objects.len()
                ));
            }
            let members: Vec<(String, &ControlPlane)> = std::iter::once(first)
                .chain(others.iter())
                .enumerate()
                .map(|(i, cp)| (format!("cluster-{}", i + 1), cp))
                .collect();
            let kubeconfig = work.join("fleet.kubeconfig");
            let named: Vec<(&str, &ControlPlane)> =
                members.iter().map(|(n, cp)| (n.as_str(), *cp)).collect();
            testenv::fleet_kubeconfig(&kubeconfig, &named)?;
            let contexts: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
            time(
                args,
                plugin,
                first,
                work,
                repo,
                &kubeconfig,
                &contexts,
                drifted,
                progress,
            )
        })();
        for cp in &others {
            stop(cp);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn time(
        args: &Args,
        plugin: &Path,
        first: &ControlPlane,
        work: &Path,
        repo: &Path,
        kubeconfig: &Path,
        contexts: &[String],
        drifted: &Drifted,
        progress: &Progress,
    ) -> Result<ExitCode> {
        let tools = Tools {
            kubeconfig: kubeconfig.to_path_buf(),
            ..Tools::new(first, plugin, repo, work, args)?
        };
        // The answer first: every context reports exactly the drift made in it.
        let ran = tools.gitops_json(&["--all-contexts"])?;
        if ran.code != Some(1) || ran.report["kind"] != "FleetDriftReport" {
            bail!(
                "kubectl gitops diff --all-contexts exited {:?}, expected 1 with a FleetDriftReport\n{}",
                ran.code,
                tail(&ran.stderr, 20)
            );
        }
        for context in ran.report["contexts"].as_array().into_iter().flatten() {
            let reported = drifted_names(&context["report"]);
            if reported != drifted.objects {
                bail!(
                    "context {}: {} drifted reported, {} expected",
                    context["context"],
                    reported.len(),
                    drifted.objects.len()
                );
            }
        }
        progress.step(&format!(
            "checked: --all-contexts reports the {} drifted objects in each of {} contexts",
            drifted.objects.len(),
            contexts.len()
        ));

        let k = contexts.len();
        let scope = args.gitops_scope().join(" ");
        let one = format!("--context={}", contexts[0]);
        let mut benches = vec![
            tools.gitops("f", &format!("kubectl gitops diff {scope} {one}"), &[&one]),
            tools.gitops(
                "g",
                &format!("kubectl gitops diff {scope} --all-contexts ({k} clusters)"),
                &["--all-contexts"],
            ),
            one_after_another(
                "h",
                &format!("kubectl gitops diff {scope} --context=C, for each of the {k}"),
                tools.gitops_command(&[]),
                contexts,
                &tools,
            ),
        ];
        if !args.skip_kubectl_diff {
            benches.push(one_after_another(
                "i",
                &format!(
                    "kubectl {} <repo>/apps {} --context=C, for each of the {k}",
                    kubectl_diff_args(None).join(" "),
                    args.kubectl_scope().join(" ")
                ),
                tools.kubectl_diff_command(None),
                contexts,
                &tools,
            ));
        }
        let load_before = time_all(&mut benches, args.runs, first, progress)?;
        let load_after = loadavg();
        let by_id = |id: &str| benches.iter().find(|b| b.id == id).map(Bench::median_wall);
        let (f, g, h) = (
            by_id("f").expect("f"),
            by_id("g").expect("g"),
            by_id("h").expect("h"),
        );
        let i = by_id("i");
        println!();
        println!(
            "kubectl gitops diff fleet benchmark: {k} clusters, each with the same {} objects, {} \
             drifted out of band in each; {} runs each, output to /dev/null",
            args.objects,
            drifted.objects.len(),
            args.runs
        );
        println!("load average (1, 5, 15 min): {load_before} before, {load_after} after");
        for b in &benches {
            let walls = b.walls();
            println!(
                "  ({}) {:<100} median {:>7.2}s  min {:>7.2}s",
                b.id,
                b.label,
                b.median_wall(),
                walls.iter().cloned().fold(f64::INFINITY, f64::min)
            );
        }
        let ratio = g / f;
        println!(
            "  {k} clusters at once take {ratio:.2}x the time of one (target: at most 1.5x): {}",
            if ratio <= 1.5 { "met" } else { "MISSED" }
        );
        println!(
            "  at once vs one after the other (ours): {:.1}x faster",
            h / g
        );
        if let Some(i) = i {
            println!(
                "  at once vs kubectl diff one after the other: {:.1}x faster",
                i / g
            );
        }
        println!("  command: {}", args.command_line());
        println!(
            "{}",
            json!({
                "bench": "diff-fleet",
                "clusters": k,
                "objects": args.objects,
                "drifted": drifted.objects.len(),
                "runs": args.runs,
                "one_s": round3(f),
                "fleet_s": round3(g),
                "sequential_ours_s": round3(h),
                "sequential_kubectl_diff_s": i.map(round3),
                "fleet_over_one": round3(ratio),
            })
        );
        if args.keep {
            eprintln!(
                "bench-diff: keeping the {k} clusters (KUBECONFIG={}, contexts {}) and the \
                 repository ({}) until stdin closes or a line is read",
                kubeconfig.display(),
                contexts.join(","),
                repo.display()
            );
            let _ = std::io::stdin().read_line(&mut String::new());
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `cmd` once per context, one after the other, as one timed command: a shell loop that
    /// adds `--context C` to each run, exits 2 at the first run that does not exit 1 (drift
    /// found) and 1 after the last.
    fn one_after_another(
        id: &'static str,
        label: &str,
        cmd: Command,
        contexts: &[String],
        tools: &Tools,
    ) -> Bench {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(
            "program=$1; n=$2; shift 2; contexts=; i=0; \
             while [ $i -lt $n ]; do contexts=\"$contexts $1\"; shift; i=$((i + 1)); done; \
             for c in $contexts; do \"$program\" \"$@\" --context \"$c\" >/dev/null; \
             [ $? = 1 ] || exit 2; done; exit 1",
        );
        shell.arg("sh").arg(cmd.get_program());
        shell.arg(contexts.len().to_string()).args(contexts);
        shell.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => shell.env(key, v),
                None => shell.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            shell.current_dir(dir);
        }
        Bench {
            id,
            label: label.to_owned(),
            command: shell,
            stderr_file: tools.stderr_file.clone(),
            samples: Vec::new(),
        }
    }
}
