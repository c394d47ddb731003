//! `bench-blame`: times our gix blame (`Repo::blame`) against `git blame --porcelain` of the same
//! file at the same commit, on a generated history. Run by `bench/blame`.
//!
//! A benchmark is a command, not a timed test (STYLE.md, habit 11): it prints a table and ratios
//! that a person can reproduce, and one JSON line for machines.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use testenv::bench::parse_number;

use anyhow::{Context, Result, bail};
use kubectl_gitops::git::{BlameLine, CommitId, Repo, RepoPath};
use serde_json::json;

/// The blamed manifest.
const BLAMED: &str = "apps/web.yaml";
/// The other files of the generated repository; commits that do not touch [`BLAMED`] change one.
const OTHERS: &[&str] = &[
    "apps/api.yaml",
    "apps/worker.yaml",
    "apps/cron.yaml",
    "apps/kustomization.yaml",
    "infra/ingress.yaml",
    "infra/cert-manager.yaml",
    "infra/monitoring/prometheus.yaml",
    "infra/monitoring/grafana.yaml",
    "clusters/dev/kustomization.yaml",
    "clusters/staging/kustomization.yaml",
    "clusters/prod/kustomization.yaml",
    "clusters/prod/patches/replicas.yaml",
    "teams/payments/namespace.yaml",
    "teams/search/namespace.yaml",
    "README.md",
];
const AUTHORS: &[(&str, &str)] = &[
    ("Alice Liddell", "alice@example.com"),
    ("Bob Builder", "bob@example.org"),
    ("Carol Danvers", "carol@example.net"),
    ("Dave Lister", "dave@example.com"),
    ("Erin Brockovich", "erin@example.org"),
    ("Renovate Bot", "bot@renovateapp.com"),
];
/// How the commit-graph is set up for a round of measurements.
const GRAPHS: &[(&str, &[&str])] = &[
    ("none", &[]),
    ("plain", &["commit-graph", "write", "--reachable"]),
    (
        "changed-paths",
        &["commit-graph", "write", "--reachable", "--changed-paths"],
    ),
];

const USAGE: &str = "\
usage: bench/blame [--commits N] [--touching T] [--runs R] [--graph none,plain,changed-paths]
                   [--keep DIR]

  --commits N    commits in the generated history (default 20000)
  --touching T   how many of them change apps/web.yaml (default 3000)
  --runs R       timed runs of each measurement; medians are shown (default 5)
  --graph LIST   commit-graph setups to measure, in order (default none,plain,changed-paths):
                 none (as git fast-import leaves it), plain (`git commit-graph write --reachable`),
                 changed-paths (the same with `--changed-paths`: Bloom filters)
  --keep DIR     build the repository in DIR and keep it (default: a temp dir, removed)
";

fn main() -> ExitCode {
    // The process-level measurement runs this binary again for one blame.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--blame-once") {
        return match blame_once(&argv[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-blame --blame-once: error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-blame: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--blame-once REPO COMMIT PATH CACHE|-`: open the repository, blame, print the line count.
fn blame_once(args: &[String]) -> Result<()> {
    let [repo, commit, path, cache] = args else {
        bail!("expected REPO COMMIT PATH CACHE|-");
    };
    let repo = Repo::open_local(Path::new(repo))?;
    let commit: CommitId = commit.parse()?;
    let path = RepoPath::parse(path)?;
    let cache = (cache != "-").then(|| PathBuf::from(cache));
    let lines = repo.blame(commit, &path, cache.as_deref())?;
    println!("{}", lines.len());
    Ok(())
}

#[derive(Debug)]
struct Args {
    commits: usize,
    touching: usize,
    runs: usize,
    graphs: Vec<String>,
    keep: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            commits: 20_000,
            touching: 3_000,
            runs: 5,
            graphs: GRAPHS.iter().map(|(name, _)| name.to_string()).collect(),
            keep: None,
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
                "--commits" => args.commits = parse_number(&flag, &value()?)?,
                "--touching" => args.touching = parse_number(&flag, &value()?)?,
                "--runs" => args.runs = parse_number(&flag, &value()?)?,
                "--graph" => {
                    args.graphs = value()?.split(',').map(str::to_string).collect();
                    for g in &args.graphs {
                        if !GRAPHS.iter().any(|(name, _)| name == g) {
                            bail!("--graph: unknown setup {g:?}\n{USAGE}");
                        }
                    }
                }
                "--keep" => args.keep = Some(PathBuf::from(value()?)),
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        if args.commits < 2 || args.runs == 0 || args.touching == 0 {
            bail!("--commits must be at least 2, --runs and --touching at least 1");
        }
        if args.touching > args.commits {
            bail!("--touching cannot exceed --commits");
        }
        Ok(args)
    }

    fn command_line(&self) -> String {
        format!(
            "bench/blame --commits {} --touching {} --runs {} --graph {}",
            self.commits,
            self.touching,
            self.runs,
            self.graphs.join(",")
        )
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
    let progress = Progress(Instant::now());
    let temp = tempfile::Builder::new()
        .prefix("kubectl-gitops-bench-blame-")
        .tempdir()
        .context("creating a temp dir")?;
    let repo_dir = match &args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!("--keep {}: already exists", dir.display());
            }
            dir.clone()
        }
        None => temp.path().join("repo"),
    };

    let stream = fast_import_stream(args.commits, args.touching);
    std::fs::create_dir_all(&repo_dir)?;
    git(&repo_dir, &["init", "-q", "-b", "main"])?;
    git_stdin(&repo_dir, &["fast-import", "--quiet"], &stream)?;
    git(&repo_dir, &["reset", "-q", "--hard", "main"])?;
    let head = git(&repo_dir, &["rev-parse", "HEAD"])?;
    let touching: usize =
        git(&repo_dir, &["rev-list", "--count", "HEAD", "--", BLAMED])?.parse()?;
    let total: usize = git(&repo_dir, &["rev-list", "--count", "HEAD"])?.parse()?;
    let lines = git(&repo_dir, &["show", &format!("HEAD:{BLAMED}")])?
        .lines()
        .count();
    progress.step(&format!(
        "repository: {total} commits, {touching} touch {BLAMED} ({lines} lines at HEAD {}), \
         fast-import stream {:.1} MB",
        &head[..12],
        stream.len() as f64 / 1e6
    ));
    // As a clone would have it: one pack made by pack-objects (fast-import's is not optimal).
    git(&repo_dir, &["repack", "-q", "-a", "-d", "-f"])?;
    let pack_size = dir_size(&repo_dir.join(".git/objects/pack"))?;
    progress.step(&format!(
        "repacked (git repack -a -d -f): {:.1} MB of packs",
        pack_size as f64 / 1e6
    ));

    let commit: CommitId = head.parse()?;
    let path = RepoPath::parse(BLAMED)?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut rounds = Vec::new();
    for graph in &args.graphs {
        let setup = GRAPHS
            .iter()
            .find(|(name, _)| name == graph)
            .expect("checked in Args::parse")
            .1;
        let graph_file = repo_dir.join(".git/objects/info/commit-graph");
        let _ = std::fs::remove_file(&graph_file);
        let _ = std::fs::remove_dir_all(repo_dir.join(".git/objects/info/commit-graphs"));
        if !setup.is_empty() {
            git(&repo_dir, setup)?;
        }
        progress.step(&format!("commit-graph: {graph}"));
        let round = measure(&args, &repo_dir, &exe, commit, &path, &head, graph)?;
        progress.step(&format!(
            "  git {:.1} ms, ours cold {:.1} ms, warm {:.3} ms",
            round.git.ms(),
            round.cold.ms(),
            round.warm.ms()
        ));
        rounds.push(round);
    }

    let where_ = if args.keep.is_some() {
        repo_dir.display().to_string()
    } else {
        format!(
            "{}, removed at exit; --keep DIR keeps it",
            repo_dir.display()
        )
    };
    print_results(&args, total, touching, lines, &head, &where_, &rounds);
    if let Some(dir) = &args.keep {
        eprintln!("kept the repository in {}", dir.display());
    }
    let agree = rounds.iter().all(|r| r.mismatches.is_empty());
    Ok(if agree {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Medians of one measurement (seconds).
#[derive(Debug, Clone, Copy)]
struct Median(f64);

impl Median {
    fn of(samples: &[Duration]) -> Median {
        let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        Median(if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        })
    }

    fn ms(self) -> f64 {
        self.0 * 1e3
    }
}

/// Everything measured with one commit-graph setup.
struct Round {
    graph: String,
    git: Median,
    cold: Median,
    warm: Median,
    process_cold: Median,
    process_warm: Median,
    /// Lines where our blame and git's disagree (commit, original line or original path).
    mismatches: Vec<String>,
}

fn measure(
    args: &Args,
    repo_dir: &Path,
    exe: &Path,
    commit: CommitId,
    path: &RepoPath,
    head: &str,
    graph: &str,
) -> Result<Round> {
    let git_args = ["blame", "--porcelain", head, "--", BLAMED];
    // Untimed: check the answers, warm the page cache for both tools.
    let porcelain = git(repo_dir, &git_args)?;
    let repo = Repo::open_local(repo_dir)?;
    let ours = repo.blame(commit, path, None)?;
    let mismatches = compare(&ours, &porcelain);

    let caches = tempfile::tempdir()?;
    let mut git_samples = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut process_cold = Vec::new();
    let mut process_warm = Vec::new();
    let warm_dir = caches.path().join("warm");
    repo.blame(commit, path, Some(&warm_dir))?;
    // Interleaved, so that a slow moment of the machine hits every measurement alike.
    for run in 0..args.runs {
        let started = Instant::now();
        let out = git_command(repo_dir, &git_args).output()?;
        git_samples.push(started.elapsed());
        if !out.status.success() {
            bail!("git blame failed: {}", String::from_utf8_lossy(&out.stderr));
        }

        let cold_dir = caches.path().join(format!("cold-{run}"));
        let started = Instant::now();
        let lines = repo.blame(commit, path, Some(&cold_dir))?;
        cold.push(started.elapsed());
        assert_eq!(lines.len(), ours.len());

        let started = Instant::now();
        let lines = repo.blame(commit, path, Some(&warm_dir))?;
        warm.push(started.elapsed());
        assert_eq!(
            lines, ours,
            "the cached blame differs from the computed one"
        );

        let cold_dir = caches.path().join(format!("process-cold-{run}"));
        process_cold.push(time_process(exe, repo_dir, head, &cold_dir)?);
        process_warm.push(time_process(exe, repo_dir, head, &warm_dir)?);
    }
    Ok(Round {
        graph: graph.to_string(),
        git: Median::of(&git_samples),
        cold: Median::of(&cold),
        warm: Median::of(&warm),
        process_cold: Median::of(&process_cold),
        process_warm: Median::of(&process_warm),
        mismatches,
    })
}

/// Wall time of `bench-blame --blame-once`: process start, opening the repository, the blame.
fn time_process(exe: &Path, repo: &Path, head: &str, cache: &Path) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("--blame-once")
        .arg(repo)
        .arg(head)
        .arg(BLAMED)
        .arg(cache)
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(elapsed)
}

/// Differences between our blame and `git blame --porcelain`, one line of text each.
fn compare(ours: &[BlameLine], porcelain: &str) -> Vec<String> {
    let theirs = parse_porcelain(porcelain);
    let mut out = Vec::new();
    if theirs.len() != ours.len() {
        out.push(format!(
            "{} lines from git, {} from us",
            theirs.len(),
            ours.len()
        ));
    }
    for (t, o) in theirs.iter().zip(ours) {
        let mine = (o.commit.as_str(), o.original_line, o.original_path.as_str());
        let git = (t.0.as_str(), t.1, t.2.as_str());
        if mine != git {
            out.push(format!("line {}: git {git:?}, ours {mine:?}", o.line));
        }
    }
    out
}

/// (commit, original line, original path) per line of `git blame --porcelain`.
fn parse_porcelain(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut paths = std::collections::HashMap::new();
    let mut current: Option<(String, usize)> = None;
    for line in text.lines() {
        if line.starts_with('\t') {
            let (commit, original) = current.take().expect("a header before each line");
            let path = paths.get(&commit).cloned().unwrap_or_default();
            out.push((commit, original, path));
        } else if let Some(path) = line.strip_prefix("filename ") {
            if let Some((commit, _)) = &current {
                paths.insert(commit.clone(), path.to_string());
            }
        } else {
            let mut words = line.split(' ');
            let first = words.next().unwrap_or_default();
            if first.len() == 40 && first.bytes().all(|b| b.is_ascii_hexdigit()) {
                let original = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                current = Some((first.to_string(), original));
            }
        }
    }
    out
}

fn print_results(
    args: &Args,
    total: usize,
    touching: usize,
    lines: usize,
    head: &str,
    repo: &str,
    rounds: &[Round],
) {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nblame of {BLAMED} ({lines} lines) at HEAD {}: {total} commits, {touching} touch the file; \
         median of {} runs",
        &head[..12],
        args.runs
    );
    let _ = writeln!(
        text,
        "\n{:<14} {:>10} {:>10} {:>8} {:>10} {:>10} {:>12} {:>12}  agree",
        "commit-graph",
        "git ms",
        "cold ms",
        "cold/git",
        "warm ms",
        "git/warm",
        "proc cold",
        "proc warm"
    );
    for r in rounds {
        let _ = writeln!(
            text,
            "{:<14} {:>10.1} {:>10.1} {:>7.2}x {:>10.3} {:>9.0}x {:>9.1} ms {:>9.1} ms  {}",
            r.graph,
            r.git.ms(),
            r.cold.ms(),
            r.cold.0 / r.git.0,
            r.warm.ms(),
            r.git.0 / r.warm.0,
            r.process_cold.ms(),
            r.process_warm.ms(),
            if r.mismatches.is_empty() {
                "yes".to_string()
            } else {
                format!("NO ({} lines)", r.mismatches.len())
            }
        );
    }
    let _ = writeln!(
        text,
        "\ntargets: cold/git <= 1.25x (our blame, empty cache, vs git blame); \
         git/warm >= 20x (our blame from the cache)"
    );
    for r in rounds {
        let cold = r.cold.0 / r.git.0;
        let warm = r.git.0 / r.warm.0;
        let _ = writeln!(
            text,
            "  {:<14} cold {:.2}x {}   warm {:.0}x faster {}",
            r.graph,
            cold,
            if cold <= 1.25 { "met" } else { "NOT met" },
            warm,
            if warm >= 20.0 { "met" } else { "NOT met" },
        );
        for m in r.mismatches.iter().take(5) {
            let _ = writeln!(text, "    differs from git: {m}");
        }
    }
    let _ = writeln!(
        text,
        "\ncommands (in {}):\n  \
         git:        git blame --porcelain {head} -- {BLAMED}   (a process; output read through a pipe)\n  \
         ours cold:  Repo::open_local(repo)?.blame({head}, \"{BLAMED}\", Some(<empty dir>))   \
         (in-process, the call only)\n  \
         ours warm:  the same call with the cache dir of an earlier call\n  \
         proc cold/warm: bench-blame --blame-once <repo> {head} {BLAMED} <cache dir>   \
         (a process: start, open, blame, exit)\n  \
         commit-graph: none = as fast-import + repack leave it; plain = git commit-graph write \
         --reachable; changed-paths = git commit-graph write --reachable --changed-paths\n  \
         reproduce: {}",
        repo,
        args.command_line()
    );
    let line = json!({
        "bench": "blame",
        "commits": total,
        "touching": touching,
        "lines": lines,
        "runs": args.runs,
        "rounds": rounds.iter().map(|r| json!({
            "commitGraph": r.graph,
            "gitMs": r.git.ms(),
            "coldMs": r.cold.ms(),
            "warmMs": r.warm.ms(),
            "processColdMs": r.process_cold.ms(),
            "processWarmMs": r.process_warm.ms(),
            "coldRatio": r.cold.0 / r.git.0,
            "warmSpeedup": r.git.0 / r.warm.0,
            "agree": r.mismatches.is_empty(),
        })).collect::<Vec<_>>(),
    });
    let _ = writeln!(text, "\n{line}");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
}

/// A small deterministic generator (xorshift64*), so every run builds the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The blamed Deployment, as data; rendered to about 60 lines.
struct Web {
    replicas: u32,
    tag: String,
    annotations: Vec<(String, String)>,
    env: Vec<(String, String)>,
    cpu: u32,
    memory: u32,
    max_surge: u32,
    probe_delay: u32,
    next_env: usize,
}

impl Web {
    fn new() -> Web {
        Web {
            replicas: 3,
            tag: "1.0.0".into(),
            annotations: vec![
                ("owner".into(), "team-web".into()),
                ("runbook".into(), "https://runbooks.example.com/web".into()),
            ],
            env: (0..6)
                .map(|i| (format!("SETTING_{i}"), format!("value-{i}")))
                .collect(),
            cpu: 250,
            memory: 256,
            max_surge: 1,
            probe_delay: 5,
            next_env: 6,
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n");
        s.push_str("  namespace: web\n  labels:\n    app.kubernetes.io/name: web\n");
        s.push_str("    app.kubernetes.io/part-of: shop\n  annotations:\n");
        for (k, v) in &self.annotations {
            let _ = writeln!(s, "    example.com/{k}: \"{v}\"");
        }
        let _ = writeln!(s, "spec:\n  replicas: {}", self.replicas);
        s.push_str("  selector:\n    matchLabels:\n      app.kubernetes.io/name: web\n");
        let _ = writeln!(
            s,
            "  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: {}\n      \
             maxUnavailable: 0",
            self.max_surge
        );
        s.push_str(
            "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: web\n",
        );
        s.push_str(
            "    spec:\n      serviceAccountName: web\n      containers:\n        - name: web\n",
        );
        let _ = writeln!(
            s,
            "          image: registry.example.com/shop/web:{}",
            self.tag
        );
        s.push_str(
            "          ports:\n            - name: http\n              containerPort: 8080\n",
        );
        s.push_str("          env:\n");
        for (k, v) in &self.env {
            let _ = writeln!(s, "            - name: {k}\n              value: \"{v}\"");
        }
        let _ = writeln!(
            s,
            "          resources:\n            requests:\n              cpu: {}m\n              \
             memory: {}Mi\n            limits:\n              memory: {}Mi",
            self.cpu,
            self.memory,
            self.memory * 2
        );
        let _ = writeln!(
            s,
            "          readinessProbe:\n            httpGet:\n              path: /healthz\n              \
             port: http\n            initialDelaySeconds: {}",
            self.probe_delay
        );
        s
    }

    /// One change of the kind a GitOps repository sees: a bump, a tweak, a setting added or dropped.
    fn change(&mut self, rng: &mut Rng, n: usize) {
        match rng.below(9) {
            0 | 1 => self.tag = format!("1.{}.{}", n / 100, n % 100),
            2 => self.replicas = 2 + rng.below(8) as u32,
            3 | 4 => {
                let i = rng.below(self.env.len());
                self.env[i].1 = format!("value-{n}");
            }
            5 => {
                self.cpu = 100 + 50 * rng.below(10) as u32;
                self.memory = 128 * (1 + rng.below(8) as u32);
            }
            6 => {
                // A setting added in the middle, or one dropped: lines move.
                if self.env.len() < 8 && (rng.below(2) == 0 || self.env.len() < 4) {
                    let at = rng.below(self.env.len() + 1);
                    self.env.insert(
                        at,
                        (format!("FEATURE_{}", self.next_env), format!("on-{n}")),
                    );
                    self.next_env += 1;
                } else {
                    let at = rng.below(self.env.len());
                    self.env.remove(at);
                }
            }
            7 => {
                let i = rng.below(self.annotations.len());
                self.annotations[i].1 = format!("changed-in-{n}");
            }
            _ => {
                self.max_surge = 1 + rng.below(3) as u32;
                self.probe_delay = 5 + rng.below(20) as u32;
            }
        }
    }
}

/// A `git fast-import` stream: `commits` commits on `main`, `touching` of them (spread evenly)
/// changing [`BLAMED`] by a few lines, each other one changing one of [`OTHERS`].
fn fast_import_stream(commits: usize, touching: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut web = Web::new();
    let mut others: Vec<Vec<String>> = OTHERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (0..30)
                .map(|l| format!("# {name} line {l}: setting-{i}-{l} = initial"))
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(commits * 600);
    let mut time: i64 = 1_600_000_000;
    let data = |out: &mut Vec<u8>, body: &str| {
        let _ = writeln!(out, "data {}", body.len());
        out.extend_from_slice(body.as_bytes());
        out.push(b'\n');
    };
    for i in 0..commits {
        time += 600 + rng.below(3600) as i64;
        let (name, email) = AUTHORS[rng.below(AUTHORS.len())];
        // Exactly `touching` commits change the file, evenly spread; commit 0 creates every file.
        let touches = i == 0 || (i * touching) / commits != ((i - 1) * touching) / commits;
        let mut files: Vec<(String, String)> = Vec::new();
        let message;
        if i == 0 {
            files.push((BLAMED.to_string(), web.render()));
            for (name, lines) in OTHERS.iter().zip(&others) {
                files.push((name.to_string(), lines.join("\n") + "\n"));
            }
            message = "Initial import of the shop manifests".to_string();
        } else if touches {
            // A few changes, and never none: every touching commit changes the file.
            let before = web.render();
            for _ in 0..1 + rng.below(3) {
                web.change(&mut rng, i);
            }
            while web.render() == before {
                web.change(&mut rng, i);
            }
            files.push((BLAMED.to_string(), web.render()));
            message = format!("web: change {i}\n\nRolled out by the pipeline.");
        } else {
            let f = rng.below(OTHERS.len());
            for _ in 0..1 + rng.below(3) {
                let l = rng.below(others[f].len());
                others[f][l] = format!("# {} line {l}: setting-{f}-{l} = {i}", OTHERS[f]);
            }
            files.push((OTHERS[f].to_string(), others[f].join("\n") + "\n"));
            message = format!("{}: change {i}", OTHERS[f]);
        }
        let _ = writeln!(out, "commit refs/heads/main\nmark :{}", i + 1);
        let _ = writeln!(out, "author {name} <{email}> {time} +0200");
        let _ = writeln!(out, "committer {name} <{email}> {time} +0200");
        data(&mut out, &message);
        if i > 0 {
            let _ = writeln!(out, "from :{i}");
        }
        for (path, body) in files {
            let _ = writeln!(out, "M 100644 inline {path}");
            data(&mut out, &body);
        }
        out.push(b'\n');
    }
    out
}

fn git_command(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    // Hermetic: nothing from the caller's Git environment, no global or system config.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = git_command(repo, args)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim_end().to_string())
}

fn git_stdin(repo: &Path, args: &[&str], input: &[u8]) -> Result<()> {
    let mut child = git_command(repo, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .context("writing the fast-import stream")?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}
