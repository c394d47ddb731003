//! The demo for a newcomer without a cluster (`./demo`): a throwaway control plane, a small
//! GitOps repository with commits by several people, applied as Flux applies it, two changes
//! made by hand in the cluster, and `kubectl gitops trace`, `diff`, `blame` and `revert` on it,
//! run through the real kubectl and printed the way a user sees them.
//!
//! [`run`] is the scenario on a running control plane; the test suite runs it on its shared one.
//! [`main`] is the command: it starts its own control plane and removes everything at the end,
//! on an error, and on Ctrl-C.

use std::ffi::OsString;
use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::flux::Flux;
use crate::{ControlPlane, Lifetime, run_ok};

/// The Flux GitRepository and Kustomization.
const FLUX_NAME: &str = "shop";

/// One line per commit: id, author, age, subject.
const LOG_FORMAT: &str = "--format=%h %an, %ar: %s";

const ALICE: (&str, &str) = ("Alice Example", "alice@example.com");
const BOB: (&str, &str) = ("Bob Builder", "bob@example.com");
const CAROL: (&str, &str) = ("Carol Coder", "carol@example.com");
const DANA: (&str, &str) = ("Dana Devops", "dana@example.com");

/// What the scenario runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `kubectl-gitops` binary; kubectl finds it on PATH as `kubectl gitops`.
    pub plugin: PathBuf,
    /// An empty scratch directory: the repository, a HOME for the commands, the plugin's PATH
    /// entry. The caller removes it.
    pub work: PathBuf,
    /// The namespace the application is applied to (created by the demo).
    pub namespace: String,
    /// The namespace of the Flux objects (created by the demo).
    pub flux_namespace: String,
    /// Colour the narration, and run the plugin with `--color=always` (its stdout is a pipe
    /// here, but the demo's is a terminal).
    pub color: bool,
}

/// Runs the scenario on `cp`, whose Flux controllers are `flux`, writing the transcript to
/// `out`. Fails when a command does not end as a user should see it end (for example, `diff`
/// finding no drift after the changes).
pub fn run(cp: &ControlPlane, flux: &Flux, options: &Options, out: &mut dyn Write) -> Result<()> {
    let ns = options.namespace.as_str();
    let mut shell = Shell::new(cp, options, out)?;
    for namespace in [ns, options.flux_namespace.as_str()] {
        run_ok(cp.kubectl().args(["create", "namespace", namespace]))?;
    }

    let mut repo = Repo::create(&shell.repo)?;
    repo.history()?;
    // Served over HTTP on loopback to source-controller; the checkout's origin is that URL.
    let url = flux.git.url_of(&shell.repo)?;
    repo.git(&["remote", "add", "origin", &url], None)?;
    shell.blank()?;
    shell.say(&format!(
        "A GitOps repository, served at {url}, checked out in {}.",
        shell.repo.display()
    ))?;
    shell.say("Every command below runs in that checkout: kubectl gitops reads Git from it.")?;
    shell.show(&["git", "log", LOG_FORMAT], 0)?;

    let applied = flux.reconcile(
        &options.flux_namespace,
        FLUX_NAME,
        &shell.repo,
        "./apps",
        serde_json::json!({"targetNamespace": ns}),
    )?;
    shell.blank()?;
    shell.say(&format!(
        "Flux's source-controller and kustomize-controller reconciled {}: Kustomization",
        &applied[..7]
    ))?;
    shell.say(&format!(
        "{}/{FLUX_NAME} is Ready at that revision.",
        options.flux_namespace
    ))?;

    repo.pending()?;
    shell.blank()?;
    shell.say("Then Dana pushes a commit that Flux has not applied yet:")?;
    shell.show(&["git", "log", "-1", "--stat", LOG_FORMAT], 0)?;

    shell.blank()?;
    shell.say("And during an incident, someone changes the cluster by hand:")?;
    shell.show(
        &[
            "kubectl",
            "set",
            "image",
            "deployment/web",
            "web=nginx:1.28",
            "-n",
            ns,
        ],
        0,
    )?;
    shell.show(
        &[
            "kubectl",
            "scale",
            "deployment/web",
            "--replicas=5",
            "-n",
            ns,
        ],
        0,
    )?;

    shell.blank()?;
    shell.say("Where did deployment web come from?")?;
    shell.gitops(&["trace", "deploy/web", "-n", ns], 0)?;

    shell.blank()?;
    shell.say("Does the cluster still match Git? What drifted, and why?")?;
    shell.gitops(&["diff", "-n", ns], 1)?;
    shell.say("Exit code 1: drift found.")?;

    shell.blank()?;
    shell.say("Who set each field of deployment web: which commit, or which change by hand?")?;
    shell.gitops(&["blame", "deploy/web", "-n", ns], 0)?;

    shell.blank()?;
    shell.say("Put everything back the way Git says, Dana's pending commit included:")?;
    shell.gitops(&["revert", "--all", "-n", ns, "--yes"], 0)?;

    shell.blank()?;
    shell.gitops(&["diff", "-n", ns], 0)?;
    shell.say("Exit code 0: the cluster matches Git again.")?;
    Ok(())
}

/// The demo's output: narration as shell comments, command lines, and what the commands print.
struct Transcript<'a> {
    out: &'a mut dyn Write,
    color: bool,
}

impl Transcript<'_> {
    fn blank(&mut self) -> Result<()> {
        writeln!(self.out)?;
        Ok(())
    }

    /// A line of narration, as a shell comment.
    fn say(&mut self, text: &str) -> Result<()> {
        if self.color {
            writeln!(self.out, "\x1b[33m# {text}\x1b[0m")?;
        } else {
            writeln!(self.out, "# {text}")?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// `$ LINE`, as typed at a prompt.
    fn command(&mut self, line: &str) -> Result<()> {
        if self.color {
            writeln!(self.out, "\x1b[1m$ {line}\x1b[0m")?;
        } else {
            writeln!(self.out, "$ {line}")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Runs commands and prints them as a terminal session, with the environment a user of the
/// demo cluster would have: the plugin on PATH, KUBECONFIG set, the checkout as working
/// directory. HOME is a scratch directory, so that nothing is cached in the user's own.
struct Shell<'a> {
    transcript: Transcript<'a>,
    repo: PathBuf,
    path: OsString,
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl<'a> Shell<'a> {
    fn new(cp: &ControlPlane, options: &Options, out: &'a mut dyn Write) -> Result<Shell<'a>> {
        let bin = options.work.join("bin");
        let home = options.work.join("home");
        let repo = options.work.join("shop");
        for dir in [&bin, &home, &repo] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let plugin = fs::canonicalize(&options.plugin)
            .with_context(|| format!("the plugin {} is missing", options.plugin.display()))?;
        std::os::unix::fs::symlink(&plugin, bin.join("kubectl-gitops"))
            .context("putting kubectl-gitops on the demo's PATH")?;
        let mut dirs = vec![bin];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Ok(Shell {
            transcript: Transcript {
                out,
                color: options.color,
            },
            repo,
            path: std::env::join_paths(dirs).context("building PATH")?,
            home,
            kubeconfig: cp.kubeconfig.clone(),
        })
    }

    fn blank(&mut self) -> Result<()> {
        self.transcript.blank()
    }

    fn say(&mut self, text: &str) -> Result<()> {
        self.transcript.say(text)
    }

    /// `kubectl gitops ARGS`.
    fn gitops(&mut self, args: &[&str], expect: i32) -> Result<()> {
        let mut words = vec!["kubectl", "gitops"];
        words.extend_from_slice(args);
        self.show(&words, expect)
    }

    /// Prints `$ WORDS`, runs them, prints what they write to stdout and stderr as it
    /// interleaves, and checks the exit code.
    fn show(&mut self, words: &[&str], expect: i32) -> Result<()> {
        let line = words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        self.transcript.command(&line)?;
        let mut cmd = Command::new(words[0]);
        cmd.args(&words[1..]);
        // The plugin's stdout is a pipe here; give the user the colours their terminal would.
        let color = self.transcript.color;
        if color && words.get(1) == Some(&"gitops") {
            cmd.arg("--color=always");
        }
        self.environment(&mut cmd);
        let (mut reader, writer) = std::io::pipe().context("creating a pipe")?;
        cmd.stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer);
        let mut child = cmd.spawn().with_context(|| format!("running {line}"))?;
        IN_FLIGHT.store(child.id(), Ordering::SeqCst);
        // Our copies of the pipe's write end must be closed for the read to end.
        drop(cmd);
        let mut text = String::new();
        let read = reader.read_to_string(&mut text);
        // Cleared before the child is reaped, so that its pid cannot have been reused when
        // the interrupt thread kills it.
        IN_FLIGHT.store(0, Ordering::SeqCst);
        let status = child.wait();
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        read.with_context(|| format!("reading the output of {line}"))?;
        let status = status?;
        self.transcript.out.write_all(text.as_bytes())?;
        self.transcript.out.flush()?;
        if status.code() != Some(expect) {
            bail!("`{line}` ended with {status}, where a user should see exit code {expect}");
        }
        Ok(())
    }

    fn environment(&self, cmd: &mut Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(&self.repo)
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT");
    }
}

/// `word` as a POSIX shell reads it: as it is when that is safe, else in single quotes.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------------------------
// The repository.

/// The shop's repository, built with the real git, one commit at a time.
struct Repo {
    dir: PathBuf,
    /// The time of the next commit: the history starts six days ago.
    clock: u64,
}

impl Repo {
    fn create(dir: &Path) -> Result<Repo> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("reading the clock")?
            .as_secs();
        let repo = Repo {
            dir: dir.to_path_buf(),
            clock: now - 6 * 86_400,
        };
        repo.git(&["init", "-q", "-b", "main"], None)?;
        Ok(repo)
    }

    /// The history Flux applies: three commits by three people.
    fn history(&mut self) -> Result<()> {
        self.write("apps/web.yaml", &web_deployment(2, "nginx:1.27.0", false))?;
        self.write("apps/web-service.yaml", WEB_SERVICE)?;
        self.commit(ALICE, "Add the web Deployment and Service", 0)?;
        self.write("apps/web.yaml", &web_deployment(3, "nginx:1.27.0", true))?;
        self.write("apps/web-settings.yaml", &web_settings("info"))?;
        self.commit(BOB, "Run 3 replicas of web, with settings", 2 * 86_400)?;
        self.write("apps/web.yaml", &web_deployment(3, "nginx:1.27.3", true))?;
        self.commit(CAROL, "Bump web to nginx 1.27.3", 2 * 86_400)
    }

    /// A commit after the applied one, three hours ago.
    fn pending(&mut self) -> Result<()> {
        self.write("apps/web-settings.yaml", &web_settings("debug"))?;
        self.commit(DANA, "Log at debug level", 2 * 86_400 - 3 * 3600)
    }

    fn write(&self, path: &str, text: &str) -> Result<()> {
        let path = self.dir.join(path);
        fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Commits everything as `author`, `after` seconds after the previous commit.
    fn commit(&mut self, author: (&str, &str), message: &str, after: u64) -> Result<()> {
        self.clock += after;
        self.git(&["add", "-A"], None)?;
        self.git(&["commit", "-q", "-m", message], Some((author, self.clock)))?;
        Ok(())
    }

    /// `git ARGS` with no user or system configuration, as `author` at `time` when given.
    fn git(&self, args: &[&str], identity: Option<((&str, &str), u64)>) -> Result<String> {
        let mut cmd = Command::new("git");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(&self.dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1");
        if let Some(((name, email), time)) = identity {
            let date = format!("@{time} +0000");
            cmd.env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email)
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_NAME", name)
                .env("GIT_COMMITTER_EMAIL", email)
                .env("GIT_COMMITTER_DATE", &date);
        }
        let out = run_ok(cmd.args(args)).with_context(|| format!("git {}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn web_deployment(replicas: u32, image: &str, settings: bool) -> String {
    let env_from = if settings {
        "          envFrom:
            - configMapRef:
                name: web-settings
"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 80
{env_from}          resources:
            requests:
              cpu: 100m
              memory: 128Mi
"
    )
}

const WEB_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 80
";

fn web_settings(log_level: &str) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
data:
  LOG_LEVEL: {log_level}
  CACHE_TTL: 60s
"
    )
}

// ---------------------------------------------------------------------------------------------
// The command.

const USAGE: &str = "\
usage: ./demo [--keep]

Starts a throwaway Kubernetes control plane (etcd and kube-apiserver on loopback, built from
their Go modules on the first run), makes a GitOps repository, applies it as Flux would,
changes the cluster by hand, and shows kubectl gitops trace, diff, blame and revert on it.
Everything is removed at the end, on an error, and on Ctrl-C.

  --keep         at the end, keep the cluster and the repository until Enter is pressed,
                 to try more commands by hand
  --plugin PATH  the kubectl-gitops binary (./demo passes the one it builds)
";

/// Temp dirs are `<tmp>/<prefix><pid>-<random>`.
const DIR_PREFIX: &str = "kubectl-gitops-demo-";

/// What is left to remove: the control plane's directory (its processes are listed there) and
/// the demo's own. Held while removing, so that the end of the run and Ctrl-C do it once.
static CLEANUP: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
/// Set when Ctrl-C (or SIGTERM, SIGHUP) came: the interrupt thread ends the process.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The pid of the command the demo waits for, 0 when none: Ctrl-C stops it before the cluster.
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

/// The `demo` command: 0 when every step ended as it should, 2 on an error, 130 on Ctrl-C.
pub fn main() -> ExitCode {
    let mut plugin = None;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => keep = true,
            "--plugin" => plugin = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprint!("demo: unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(plugin) = plugin else {
        eprint!("demo: --plugin PATH is needed (./demo passes it)\n{USAGE}");
        return ExitCode::from(2);
    };
    let result = handle_interrupts().and_then(|()| standalone(&plugin, keep));
    if INTERRUPTED.load(Ordering::SeqCst) {
        // A command failed because Ctrl-C reached it too; the interrupt thread says so, cleans
        // up and exits.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn standalone(plugin: &Path, keep: bool) -> Result<()> {
    remove_stale_dirs();
    let work = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .context("creating a temp dir")?
        .keep();
    let cluster_dir = work.join("cluster");
    *CLEANUP.lock().expect("the cleanup lock is never poisoned") =
        Some((cluster_dir.clone(), work.clone()));

    let options = Options {
        plugin: plugin.to_path_buf(),
        work: work.clone(),
        namespace: "shop".to_owned(),
        flux_namespace: "flux-system".to_owned(),
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = std::io::stdout();
    let result = demo_on_own_cluster(&options, &cluster_dir, keep, &mut out);
    if !INTERRUPTED.load(Ordering::SeqCst) {
        let mut transcript = Transcript {
            out: &mut out,
            color: options.color,
        };
        let _ = transcript.blank();
        let _ = transcript.say("Stopping the control plane and removing the repository.");
    }
    finish();
    result
}

fn demo_on_own_cluster(
    options: &Options,
    cluster_dir: &Path,
    keep: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut transcript = Transcript {
        out,
        color: options.color,
    };
    transcript.say("kubectl-gitops demo: a throwaway control plane, a GitOps repository, two")?;
    transcript
        .say("changes made by hand in the cluster, and what kubectl gitops says about them.")?;
    transcript.blank()?;
    transcript
        .say("Starting etcd and kube-apiserver on loopback. The first run builds them from")?;
    transcript.say("their Go modules (about 4 minutes); later runs start in seconds.")?;
    let cp = ControlPlane::start(cluster_dir, Lifetime::TiedToThisProcess)?;
    transcript.say(&format!(
        "kube-apiserver {} is up at {}.",
        cp.version, cp.server
    ))?;
    transcript.say("Starting Flux's source-controller and kustomize-controller against it. The")?;
    transcript.say("first run builds them from their Go modules (about 10 minutes).")?;
    let flux = Flux::start(&cp)?;
    run(&cp, &flux, options, transcript.out)?;
    if keep {
        transcript.blank()?;
        transcript
            .say("The cluster and the repository stay until you press Enter. In another shell:")?;
        writeln!(
            transcript.out,
            "export KUBECONFIG={} PATH={}:$PATH\ncd {}",
            cp.kubeconfig.display(),
            options.work.join("bin").display(),
            options.work.join("shop").display()
        )?;
        transcript.out.flush()?;
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    Ok(())
}

/// Stops the control plane and removes the demo's files, once: at the end, or on Ctrl-C.
fn finish() {
    let mut cleanup = CLEANUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((cluster, work)) = cleanup.take() {
        let _ = ControlPlane::stop_dir(&cluster);
        let _ = fs::remove_dir_all(work);
    }
}

/// Ctrl-C, SIGTERM and SIGHUP stop the control plane, remove the files and exit 130. They are
/// blocked in every thread (child processes start with them unblocked) and taken by one thread
/// that waits for them, so that the cleanup runs as ordinary code, not in a signal handler.
fn handle_interrupts() -> Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; no other thread runs yet.
    unsafe {
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("blocking SIGINT: {}", std::io::Error::last_os_error());
        }
    }
    std::thread::Builder::new()
        .name("demo-interrupts".into())
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: `set` was initialised above; sigwait only writes the signal number.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                INTERRUPTED.store(true, Ordering::SeqCst);
                let pid = IN_FLIGHT.load(Ordering::SeqCst);
                if pid != 0 {
                    // SAFETY: a signal to a child of this process that is not reaped yet (the
                    // demo clears IN_FLIGHT before it reaps the child).
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                }
                eprintln!("\ndemo: interrupted; stopping the control plane and removing its files");
                finish();
                std::process::exit(130);
            }
        })
        .context("starting the interrupt thread")?;
    Ok(())
}

/// Removes the temp dirs of earlier runs that were killed before they could clean up (their
/// processes died with them).
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

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn command_lines_are_shown_as_a_shell_reads_them() {
        for (word, shown) in [
            ("deploy/web", "deploy/web"),
            ("web=nginx:1.28", "web=nginx:1.28"),
            ("--replicas=5", "--replicas=5"),
            ("--format=%h %an", "'--format=%h %an'"),
            ("it's", r"'it'\''s'"),
            ("$HOME", "'$HOME'"),
            ("", "''"),
        ] {
            assert_eq!(shell_quote(word), shown, "{word:?}");
        }
    }
}
