//! `bench/diff --shape helm` and `--shape argo`: our diff of Helm releases against what users
//! run without it, `helm template | kubectl diff --server-side` for each release, on the same
//! cluster.
//!
//! N releases of one chart in Git (M objects each: a Deployment, a Service, a ServiceAccount, a
//! Secret and M-4 ConfigMaps; values from the chart's values.yaml, a values file per release
//! and an inline value).
//! - `--shape helm`: N Flux HelmReleases, applied by real kustomize-controller and installed by
//!   real helm-controller (tests/testenv) from a Git repository it serves on loopback; the
//!   values files are in the chart's repository.
//! - `--shape argo`: N multi-source Argo CD Applications. Each renders the chart of one
//!   repository with its values file from a second (a `ref` source, `$config/values/..`) and a
//!   `team` parameter, rendered by the real `helm` as Argo CD's repo-server calls it and applied
//!   as its application controller does (server-side as argocd-controller, a tracking id on
//!   every object; there is no Argo CD controller in tests/testenv).
//!
//! P % of the objects are then changed out of band, and our diff must find exactly those.
//! Timed, R runs each, interleaved:
//!   (a) kubectl gitops diff -n bench, its caches emptied before each run
//!   (b) kubectl gitops diff -n bench, caches warm
//!   (c) for each release in turn: helm template RELEASE charts/app -n bench [-f
//!       charts/app/values.yaml] -f VALUES --set team=.. | kubectl diff --server-side
//!       --field-manager=MANAGER --force-conflicts -n bench -f -  (MANAGER helm-controller or
//!       argocd-controller)
//! Prints medians, the ratio of (c) to (b) against the issue's target (5x), peak RSS, and one
//! JSON line.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use testenv::bench::{
    Bench, median, median_of, not_in_sync, parse_number, print_table, run_interleaved, tail,
};
use testenv::flux::{Flux, WATCH_LABEL};
use testenv::helm::HelmController;
use testenv::{ControlPlane, Lifetime};

const NS: &str = "bench";

const USAGE: &str = "\
usage: bench/diff --shape helm|argo [--releases N] [--objects-per-release M] [--drift-percent P]
                  [--runs R] [--only a,b,c] [--plugin PATH] [--keep]
";

/// Which reconciler installs the releases.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Flux HelmReleases, installed by real helm-controller.
    Flux,
    /// Multi-source Argo CD Applications, applied as its controller does.
    Argo,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Flux => "helm",
            Shape::Argo => "argo",
        }
    }

    fn field_manager(self) -> &'static str {
        match self {
            Shape::Flux => testenv::helm::FIELD_MANAGER,
            Shape::Argo => testenv::argo::FIELD_MANAGER,
        }
    }
}

struct Args {
    shape: Shape,
    releases: usize,
    per_release: usize,
    drift_percent: f64,
    runs: usize,
    only: Option<BTreeSet<String>>,
    plugin: PathBuf,
    keep: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-helm: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_args() -> Result<Args> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let mut args = Args {
        shape: Shape::Flux,
        releases: 20,
        per_release: 10,
        drift_percent: 5.0,
        runs: 3,
        only: None,
        plugin: target.join("release/kubectl-gitops"),
        keep: false,
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
            "--shape" => {
                args.shape = match value()?.as_str() {
                    "helm" => Shape::Flux,
                    "argo" => Shape::Argo,
                    shape => bail!("--shape: this benchmark is helm or argo, not {shape:?}"),
                }
            }
            "--releases" => args.releases = parse_number(&flag, &value()?)?,
            "--objects-per-release" => args.per_release = parse_number(&flag, &value()?)?,
            "--drift-percent" => args.drift_percent = parse_number(&flag, &value()?)?,
            "--runs" => args.runs = parse_number(&flag, &value()?)?,
            "--only" => {
                let ids: BTreeSet<String> = value()?.split(',').map(str::to_owned).collect();
                if let Some(bad) = ids
                    .iter()
                    .find(|id| !["a", "b", "c"].contains(&id.as_str()))
                {
                    bail!("--only: {bad:?} is not one of a, b, c");
                }
                args.only = Some(ids);
            }
            "--plugin" => args.plugin = PathBuf::from(value()?),
            "--keep" => args.keep = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {arg:?} for --shape helm or argo\n{USAGE}"),
        }
    }
    if args.runs == 0 || !(1..=200).contains(&args.releases) {
        bail!("--runs must be at least 1 and --releases from 1 to 200");
    }
    if args.per_release < 5 {
        bail!(
            "--objects-per-release must be at least 5 (the chart's fixed objects and a ConfigMap)"
        );
    }
    if !(0.0..=100.0).contains(&args.drift_percent) || args.drift_percent == 0.0 {
        bail!("--drift-percent must be above 0 and at most 100");
    }
    Ok(args)
}

fn run() -> Result<ExitCode> {
    let args = parse_args()?;
    let plugin = fs::canonicalize(&args.plugin)
        .with_context(|| format!("the plugin {} is missing", args.plugin.display()))?;
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:6.1}s] {what}", started.elapsed().as_secs_f64());
    let work = tempfile::Builder::new()
        .prefix("kubectl-gitops-bench-helm-")
        .tempdir()?;
    step(match args.shape {
        Shape::Flux => {
            "starting etcd + kube-apiserver, Flux's source-controller, kustomize-controller and \
             helm-controller"
        }
        Shape::Argo => "starting etcd + kube-apiserver, with Argo CD's Application CRD",
    });
    let cp = ControlPlane::start(&work.path().join("cluster"), Lifetime::TiedToThisProcess)?;
    let result = (|| {
        cp.kubectl_run(&["create", "namespace", NS], None)?;
        let (repo, helm_bin, installed) = match args.shape {
            Shape::Flux => {
                let flux = Flux::start(&cp)?;
                let helm = HelmController::start(&cp, &flux)?;
                let (repo, installed) = install_flux(&args, &flux, &helm, work.path())?;
                (repo, helm.binaries.helm.clone(), installed)
            }
            Shape::Argo => {
                cp.install_crds()?;
                let helm = testenv::ensure_helm()?.helm;
                let (repo, installed) = install_argo(&args, &cp, &helm, work.path())?;
                (repo, helm, installed)
            }
        };
        step(&installed);
        bench(&args, &plugin, &cp, &repo, &helm_bin, work.path(), &step)
    })();
    for &pid in cp.pids() {
        // SAFETY: a signal to a process this program started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    result
}

/// The chart: `fixed` objects and `configmaps` ConfigMaps from values.
fn write_chart(repo: &Path, configmaps: usize) -> Result<()> {
    let chart = repo.join("charts/app");
    fs::create_dir_all(chart.join("templates"))?;
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: app\nversion: 1.4.0\n",
    )?;
    fs::write(
        chart.join("values.yaml"),
        format!(
            "replicas: 1\nimage: nginx:1.27\nport: 8080\ngreeting: hello\nteam: nobody\n\
             logLevel: info\nconfigMaps: {configmaps}\n"
        ),
    )?;
    let templates = [
        (
            "deployment.yaml",
            "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    app: {{ .Release.Name }}
    team: {{ .Values.team }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
    spec:
      serviceAccountName: {{ .Release.Name }}
      containers:
        - name: app
          image: {{ .Values.image }}
          ports:
            - containerPort: {{ .Values.port }}
          env:
            - name: LOG_LEVEL
              value: {{ .Values.logLevel | quote }}
",
        ),
        (
            "service.yaml",
            "\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector:
    app: {{ .Release.Name }}
  ports:
    - name: http
      port: 80
      targetPort: {{ .Values.port }}
",
        ),
        (
            "serviceaccount.yaml",
            "\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}
",
        ),
        (
            "secret.yaml",
            "\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-token
type: Opaque
data:
  token: {{ printf \"%s-%s\" .Release.Name .Values.team | b64enc }}
",
        ),
        (
            "configmaps.yaml",
            "\
{{- range $i := until (int .Values.configMaps) }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-settings-{{ $i }}
data:
  greeting: {{ $.Values.greeting | quote }}
  logLevel: {{ $.Values.logLevel | quote }}
  index: \"{{ $i }}\"
{{- end }}
",
        ),
    ];
    for (file, text) in templates {
        fs::write(chart.join("templates").join(file), text)?;
    }
    Ok(())
}

/// The release `app-NN`: its name, its values file, its inline `team`.
fn release(i: usize) -> (String, String, String) {
    let name = format!("app-{i:02}");
    (
        name.clone(),
        format!("values/{name}.yaml"),
        format!("team-{}", i % 5),
    )
}

/// Writes the values file of release `name` at `values_file` under `repo`.
fn write_values(repo: &Path, name: &str, values_file: &str, i: usize) -> Result<()> {
    let path = repo.join(values_file);
    fs::create_dir_all(path.parent().expect("a values file is in a directory"))?;
    fs::write(
        path,
        format!("replicas: {}\ngreeting: hello-{name}\n", 1 + i % 3),
    )?;
    Ok(())
}

fn write_releases(repo: &Path, releases: usize) -> Result<()> {
    fs::create_dir_all(repo.join("deploy"))?;
    for i in 0..releases {
        let (name, values_file, team) = release(i);
        write_values(repo, &name, &values_file, i)?;
        fs::write(
            repo.join(format!("deploy/{name}.yaml")),
            format!(
                "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: {name}
  labels:
    {WATCH_LABEL}: real
spec:
  interval: 1h
  install:
    disableWait: true
  upgrade:
    disableWait: true
  chart:
    metadata:
      labels:
        {WATCH_LABEL}: real
    spec:
      chart: ./charts/app
      reconcileStrategy: Revision
      interval: 1h
      sourceRef:
        kind: GitRepository
        name: apps
      valuesFiles:
        - charts/app/values.yaml
        - {values_file}
  values:
    team: {team}
"
            ),
        )?;
    }
    Ok(())
}

/// `git` in `repo`, with fixed identities.
fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Changes `percent` % of the objects out of band, spread over the releases; returns them as
/// `Kind/name`.
fn drift(cp: &ControlPlane, args: &Args) -> Result<BTreeSet<String>> {
    let configmaps = args.per_release - 4;
    let mut objects: Vec<(&str, String)> = Vec::new();
    for i in 0..args.releases {
        let (name, _, _) = release(i);
        objects.push(("Deployment", name.clone()));
        objects.push(("Service", name.clone()));
        for c in 0..configmaps {
            objects.push(("ConfigMap", format!("{name}-settings-{c}")));
        }
    }
    let total = args.releases * args.per_release;
    let want =
        ((total as f64 * args.drift_percent / 100.0).round() as usize).clamp(1, objects.len());
    let stride = objects.len() as f64 / want as f64;
    let mut drifted = BTreeSet::new();
    for k in 0..want {
        let (kind, name) = &objects[((k as f64 + 0.5) * stride) as usize];
        let target = format!("{}/{name}", kind.to_ascii_lowercase());
        let change: Vec<&str> = match *kind {
            "Deployment" => vec!["scale", &target, "--replicas=7"],
            "ConfigMap" => vec![
                "patch",
                &target,
                "--type=merge",
                "-p",
                r#"{"data":{"logLevel":"debug"}}"#,
            ],
            _ => vec!["annotate", &target, "shop.example.com/note=changed by hand"],
        };
        let mut full = vec!["-n", NS];
        full.extend(change);
        cp.kubectl_run(&full, None)?;
        drifted.insert(format!("{kind}/{name}"));
    }
    Ok(drifted)
}

/// Writes the chart and N HelmReleases of it into one repository, which kustomize-controller
/// applies and helm-controller installs; returns the repository and what was installed.
fn install_flux(
    args: &Args,
    flux: &Flux,
    helm: &HelmController,
    work: &Path,
) -> Result<(PathBuf, String)> {
    let repo = work.join("repo");
    fs::create_dir_all(&repo)?;
    write_chart(&repo, args.per_release - 4)?;
    write_releases(&repo, args.releases)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "Bench releases"])?;
    let url = flux.git.url_of(&repo)?;
    git(&repo, &["remote", "add", "origin", &url])?;
    let head = flux.reconcile(
        NS,
        "apps",
        &repo,
        "./deploy",
        json!({"targetNamespace": NS}),
    )?;
    for i in 0..args.releases {
        helm.wait_release(NS, &release(i).0, None)?;
    }
    let installed = format!(
        "repository at {}: {} HelmReleases of one chart ({} objects each, {} in all), \
         installed by real helm-controller",
        &head[..12],
        args.releases,
        args.per_release,
        args.releases * args.per_release
    );
    Ok((repo, installed))
}

/// The repository of the values files of `--shape argo`, beside the chart's.
fn config_repo(work: &Path) -> PathBuf {
    work.join("config")
}

/// Writes the chart into one repository and the values files into a second, then renders and
/// applies N multi-source Applications as Argo CD does; returns the chart's repository and
/// what was applied.
fn install_argo(
    args: &Args,
    cp: &ControlPlane,
    helm: &Path,
    work: &Path,
) -> Result<(PathBuf, String)> {
    let repo = work.join("repo");
    write_chart(&repo, args.per_release - 4)?;
    let repo_url = format!("file://{}", repo.display());
    let chart_head = testenv::init_bench_repo(&repo, &repo_url)?;
    let config = config_repo(work);
    for i in 0..args.releases {
        let (name, values_file, _) = release(i);
        write_values(&config, &name, &values_file, i)?;
    }
    let config_url = format!("file://{}", config.display());
    let config_head = testenv::init_bench_repo(&config, &config_url)?;
    let version: Value = serde_json::from_str(&cp.kubectl_run(&["version", "-o", "json"], None)?)?;
    let kube_version = version["serverVersion"]["gitVersion"]
        .as_str()
        .context("kubectl version names no server version")?;
    for i in 0..args.releases {
        let (name, values_file, team) = release(i);
        // As Argo CD's repo-server runs it (util/helm/cmd.go): the Application's name is the
        // release's, parameters are --set.
        let out = Command::new(helm)
            .current_dir(&repo)
            .args(["template", "charts/app", "--name-template", &name])
            .args(["--namespace", NS, "--kube-version", kube_version])
            .arg("--values")
            .arg(config.join(&values_file))
            .args(["--set", &format!("team={team}"), "--include-crds"])
            .env("HELM_NO_PLUGINS", "1")
            .output()
            .context("running helm template")?;
        if !out.status.success() {
            bail!(
                "helm template {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        testenv::argo::apply(cp, NS, &name, &String::from_utf8_lossy(&out.stdout))?;
        let application = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "project": "default",
                "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
                "syncPolicy": {"automated": {"prune": true}},
                "sources": [
                    {"repoURL": repo_url, "path": "charts/app", "targetRevision": "main",
                     "helm": {"valueFiles": [format!("$config/{values_file}")],
                              "parameters": [{"name": "team", "value": team}]}},
                    {"repoURL": config_url, "targetRevision": "main", "ref": "config"},
                ],
            },
            // Argo CD keeps an Application's status in the main resource.
            "status": {
                "sync": {"status": "Synced", "revisions": [chart_head, config_head]},
                "health": {"status": "Healthy"},
            },
        });
        cp.kubectl_run(
            &["apply", "--server-side", "-f", "-"],
            Some(&application.to_string()),
        )?;
    }
    let installed = format!(
        "repositories at {} (chart) and {} (values): {} multi-source Applications of one chart \
         ({} objects each, {} in all), applied as Argo CD does",
        &chart_head[..12],
        &config_head[..12],
        args.releases,
        args.per_release,
        args.releases * args.per_release
    );
    Ok((repo, installed))
}

fn bench(
    args: &Args,
    plugin: &Path,
    cp: &ControlPlane,
    repo: &Path,
    helm_bin: &Path,
    work: &Path,
    step: &dyn Fn(&str),
) -> Result<ExitCode> {
    let objects = args.releases * args.per_release;
    let path = format!(
        "{}:{}",
        helm_bin.parent().expect("helm is a file").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cache = work.join("cache");
    let helm_home = work.join("helm-home");
    let kubeconfig = cp.kubeconfig.display().to_string();
    let ours = |extra: &[&str]| -> Command {
        let mut cmd = Command::new(plugin);
        cmd.current_dir(repo)
            .env_remove("KUBECONFIG")
            .env("PATH", &path)
            .env("XDG_CACHE_HOME", &cache)
            .args(["diff", "--kubeconfig", &kubeconfig, "-n", NS])
            .args(extra);
        cmd
    };
    let clean = ours(&["-o", "json"]).output()?;
    if clean.status.code() != Some(0) {
        bail!(
            "after a clean install our diff exited {:?}: {}",
            clean.status.code(),
            tail(&String::from_utf8_lossy(&clean.stderr), 20)
        );
    }
    step("baseline: our diff finds every release in sync");

    let drifted = drift(cp, args)?;
    step(&format!("drifted {} objects out of band", drifted.len()));
    let checked = ours(&["-o", "json"]).output()?;
    let report: Value = serde_json::from_slice(&checked.stdout).unwrap_or_default();
    let found = not_in_sync(&report);
    let exact = found == drifted && checked.status.code() == Some(1);
    step(&format!(
        "checked: our diff reports {} of {} drifted, exactly those: {exact}",
        found.len(),
        drifted.len()
    ));
    if !exact {
        eprintln!(
            "          drifted, not reported: {:?}; reported, not drifted: {:?}; exit {:?}: {}",
            drifted.difference(&found).collect::<Vec<_>>(),
            found.difference(&drifted).collect::<Vec<_>>(),
            checked.status.code(),
            tail(&String::from_utf8_lossy(&checked.stderr), 5)
        );
    }

    // The values files as helm-controller and Argo CD's repo-server pass them.
    let values = |values_file: &str| match args.shape {
        Shape::Flux => format!("-f charts/app/values.yaml -f {values_file}"),
        Shape::Argo => format!("-f {}", config_repo(work).join(values_file).display()),
    };
    let manager = args.shape.field_manager();
    // Where our warm runs take their renders from, as `-v` counts them.
    let verbose = ours(&["-v=1"]).output()?;
    let renders = String::from_utf8_lossy(&verbose.stderr)
        .lines()
        .find_map(|l| l.split_once("helm: ").map(|(_, n)| format!("helm: {n}")))
        .unwrap_or_else(|| "no helm renders counted".to_owned());
    step(&format!("a warm run of ours: {renders}"));
    let peer: Vec<Command> = (0..args.releases)
        .map(|i| {
            let (name, values_file, team) = release(i);
            let pipeline = format!(
                "\"$HELM\" template {name} charts/app --namespace {NS} \
                 {} --set team={team} \
                 | kubectl --kubeconfig \"$KC\" diff --server-side \
                 --field-manager={manager} --force-conflicts -n {NS} -f -",
                values(&values_file)
            );
            let mut cmd = Command::new("sh");
            cmd.current_dir(repo)
                .env_remove("KUBECONFIG")
                .env("HELM", helm_bin)
                .env("KC", &kubeconfig)
                .env("HELM_CACHE_HOME", helm_home.join("cache"))
                .env("HELM_CONFIG_HOME", helm_home.join("config"))
                .env("HELM_DATA_HOME", helm_home.join("data"))
                .args(["-c", &pipeline]);
            cmd
        })
        .collect();
    let mut benches = vec![
        Bench::new(
            "a",
            "kubectl gitops diff -n bench (caches cold)",
            vec![ours(&[])],
        ),
        Bench::new(
            "b",
            "kubectl gitops diff -n bench (caches warm)",
            vec![ours(&[])],
        ),
        Bench::new(
            "c",
            "helm template RELEASE .. | kubectl diff --server-side -f -, each release in turn",
            peer,
        ),
    ];
    if let Some(only) = &args.only {
        benches.retain(|b| only.contains(b.id));
    }
    run_interleaved(&mut benches, args.runs, |bench| {
        if bench.id == "a" {
            let _ = fs::remove_dir_all(&cache);
        }
    })?;

    let median_of = |id: &str| median_of(&benches, id);
    println!();
    let what = match args.shape {
        Shape::Flux => "HelmReleases of one chart in Git",
        Shape::Argo => "multi-source Argo CD Applications of one chart in Git",
    };
    let how = match args.shape {
        Shape::Flux => "installed by real helm-controller",
        Shape::Argo => "applied as Argo CD does",
    };
    println!(
        "bench/diff --shape {}: {} {what}, {} objects each ({objects} in all), {how}, {} drifted \
         out of band; {} runs, medians",
        args.shape.name(),
        args.releases,
        args.per_release,
        drifted.len(),
        args.runs
    );
    print_table(&benches);
    let mut ratios = Vec::new();
    for (what, ours, target) in [
        (
            "warm: ours vs helm template | kubectl diff",
            median_of("b"),
            Some(5.0),
        ),
        (
            "cold: ours vs helm template | kubectl diff",
            median_of("a"),
            None,
        ),
    ] {
        if let (Some(ours), Some(peer)) = (ours, median_of("c")) {
            let r = peer / ours;
            match target {
                Some(t) => println!(
                    "{what:<44} {r:>6.1}x  (target {t}x: {})",
                    if r >= t { "ok" } else { "MISSED" }
                ),
                None => println!("{what:<44} {r:>6.1}x"),
            }
            ratios
                .push(json!({"what": what, "ratio": (r * 10.0).round() / 10.0, "target": target}));
        }
    }
    println!("ours finds exactly the drift made: {exact}; a warm run of ours: {renders}");
    let mut line = format!(
        "bench/diff --shape {} --releases {} --objects-per-release {} --drift-percent {} \
         --runs {}",
        args.shape.name(),
        args.releases,
        args.per_release,
        args.drift_percent,
        args.runs
    );
    if let Some(only) = &args.only {
        line.push_str(&format!(
            " --only {}",
            only.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    println!("command: {line}");
    println!(
        "{}",
        json!({
            "shape": args.shape.name(),
            "releases": args.releases,
            "objectsPerRelease": args.per_release,
            "drifted": drifted.len(),
            "exact": exact,
            "warmRenders": renders,
            "medians": benches.iter().map(|b| json!({"id": b.id, "label": b.label,
                "median": (median(&b.walls) * 1000.0).round() / 1000.0,
                "peakRssMb": b.peak_rss_mb.round()})).collect::<Vec<_>>(),
            "ratios": ratios,
        })
    );
    if args.keep {
        eprintln!(
            "bench-helm: keeping the cluster (KUBECONFIG={}), the repository ({}) and the cache \
             (XDG_CACHE_HOME={}) until stdin closes or a line is read",
            cp.kubeconfig.display(),
            repo.display(),
            cache.display()
        );
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    Ok(if exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
