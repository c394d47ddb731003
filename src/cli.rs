//! The command line: kubectl's global flags and the subcommands, as clap types only.
//!
//! kubectl hands a plugin its arguments unparsed, so every global flag is `global = true`: it is
//! accepted before or after the subcommand, as users type it for kubectl itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::ServerSide;
use crate::report::{ColorMode, InfoFormat};

/// Drift, trace, blame and revert of live Kubernetes objects against Git.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl gitops",
    bin_name = "kubectl gitops",
    version,
    about = "Drift, trace, blame and revert of live Kubernetes objects against Git",
    long_about = "kubectl gitops maps every live object back to the Git repository, file, lines \
                  and commit it came from (through our annotations, kustomize's origin, and the \
                  labels of Flux and Argo CD), and tells what drifted, who changed it, and how to \
                  put it back.\n\nExit codes: 0 nothing to report, 1 drift found (diff), 2 error.",
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags with kubectl's meaning, valid with every subcommand.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global flags (as in kubectl)")]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use (else $KUBECONFIG, else ~/.kube/config)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; several (a,b,c or repeated) make a fleet run (diff,
    /// trace, watch), one per context
    #[arg(long, global = true, value_name = "NAME", value_delimiter = ',')]
    pub context: Vec<String>,
    /// Every context of the kubeconfig (diff, trace, watch), or those --context-selector picks
    #[arg(long, global = true, conflicts_with = "context")]
    pub all_contexts: bool,
    /// Pick contexts by name: a glob (`*`, `?`), e.g. 'prod-*'; implies --all-contexts
    #[arg(long, global = true, value_name = "GLOB", conflicts_with = "context")]
    pub context_selector: Option<String>,
    /// How many contexts of a fleet run are worked on at once
    #[arg(long, global = true, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub context_concurrency: u16,
    /// The kubeconfig cluster to use (overrides the context's)
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use (overrides the context's)
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// The namespace scope (else the context's, else "default")
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// Every namespace
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// How long to wait for one server request: 0 (no limit), 30s, 1m, 500ms, or plain seconds
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<RequestTimeout>,
    /// Username to impersonate for the operation
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate (repeat for several)
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,
    /// When to colour output: auto honours NO_COLOR and colours only a terminal
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto, value_name = "WHEN")]
    pub color: ColorMode,
    /// Debug log on stderr (requests, Git reads, timings); -v=2 says more
    #[arg(
        short = 'v',
        long,
        global = true,
        value_name = "LEVEL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "1"
    )]
    pub verbose: Option<u8>,
    /// Bound of the on-disk cache of kustomize renders (least recently used go first): bytes,
    /// or 512Ki, 256Mi, 1Gi, 1G; 0 turns the cache off
    #[arg(long, global = true, value_name = "SIZE", default_value = "256Mi", value_parser = crate::render::parse_cache_size)]
    pub render_cache_size: u64,
}

/// A parsed `--request-timeout`: zero means "no limit", as in kubectl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

impl RequestTimeout {
    /// The limit, or None for "wait as long as it takes".
    pub fn limit(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what drifted from Git, and who changed it
    Diff(DiffArgs),
    /// Show where an object came from: repo, file, lines, commit, reconciler
    Trace(TraceArgs),
    /// Show which commit, or which out-of-band change, set each field
    Blame(BlameArgs),
    /// Put objects back the way Git says
    Revert(RevertArgs),
    /// Follow the cluster and report the moment it leaves Git
    Watch(WatchArgs),
    /// Print manifests with source annotations, for `kubectl apply -f -`
    Stamp(StampArgs),
    /// Show the resolved kube context, server and version
    Context(ContextArgs),
    /// Show the version and the commit it was built from
    Version(VersionArgs),
    /// Print a shell completion script for kubectl-gitops run on its own
    Completion(CompletionArgs),
}

impl Command {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Diff(_) => "diff",
            Command::Trace(_) => "trace",
            Command::Blame(_) => "blame",
            Command::Revert(_) => "revert",
            Command::Watch(_) => "watch",
            Command::Stamp(_) => "stamp",
            Command::Context(_) => "context",
            Command::Version(_) => "version",
            Command::Completion(_) => "completion",
        }
    }
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// What to compare: TYPE, TYPE/NAME (as kubectl accepts them); every object with a source
    /// in the namespace if none
    #[arg(value_name = "TYPE[/NAME]")]
    pub objects: Vec<String>,
    /// The objects a file or directory of the local checkout declares (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Label selector, as in kubectl
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The repository: a local checkout or a URL (else found from each object)
    #[arg(long, value_name = "PATH|URL")]
    pub repo: Option<String>,
    /// The Git revision to compare with (else the tracked branch's tip, or HEAD of the local
    /// checkout in use)
    #[arg(long, value_name = "REV")]
    pub against: Option<String>,
    /// auto: prove in-sync offline, dry-run the rest; true: dry-run every object; false: never
    /// (only GET and LIST requests)
    #[arg(long, value_enum, default_value_t = ServerSide::Auto, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub server_side: ServerSide,
    /// Dry runs in flight at once
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Ignore a field: KIND[.GROUP][/NAME]:/json/pointer, or manager=NAME (repeatable)
    #[arg(long = "ignore", value_name = "RULE")]
    pub ignore: Vec<String>,
    /// List ignored fields, and the fields that are always ignored
    #[arg(long)]
    pub show_ignored: bool,
    /// Read discovery and OpenAPI schemas from the server, not the 10-minute disk cache
    #[arg(long)]
    pub refresh_discovery: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = crate::report::DiffFormat::Diff, value_name = "FORMAT")]
    pub output: crate::report::DiffFormat,
}

/// `--server-side`: the engine's mode, parsed by its name.
impl ValueEnum for ServerSide {
    fn value_variants<'a>() -> &'a [Self] {
        &[ServerSide::Auto, ServerSide::True, ServerSide::False]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The objects: TYPE/NAME, or TYPE for every object of that type in scope
    #[arg(value_name = "TYPE/NAME", required = true)]
    pub objects: Vec<String>,
    /// Label selector for TYPE without a name, as in kubectl
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The repository: a local checkout or a URL (else found from each object)
    #[arg(long, value_name = "PATH|URL")]
    pub repo: Option<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = crate::report::TraceFormat::Text, value_name = "FORMAT")]
    pub output: crate::report::TraceFormat,
}

#[derive(Debug, Args)]
pub struct BlameArgs {
    /// The object, as TYPE/NAME
    #[arg(value_name = "TYPE/NAME")]
    pub object: String,
    /// The repository: a local checkout or a URL (else found from the object)
    #[arg(long, value_name = "PATH|URL")]
    pub repo: Option<String>,
    /// Output format: text, or json (one record per line)
    #[arg(short = 'o', long, value_enum, default_value_t = crate::report::BlameFormat::Text, value_name = "FORMAT")]
    pub output: crate::report::BlameFormat,
    /// How to show times
    #[arg(long, value_enum, default_value_t = crate::report::TimeFormat::Relative, value_name = "WHEN")]
    pub time: crate::report::TimeFormat,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["objects", "all"]))]
pub struct RevertArgs {
    /// The objects, as TYPE/NAME (as kubectl accepts them)
    #[arg(value_name = "TYPE/NAME")]
    pub objects: Vec<String>,
    /// Every drifted or missing object in scope (-n, -A, -l, -f)
    #[arg(long, conflicts_with = "objects")]
    pub all: bool,
    /// With --all: the objects a file or directory of the local checkout declares (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "PATH", requires = "all")]
    pub files: Vec<PathBuf>,
    /// With --all: label selector, as in kubectl
    #[arg(short = 'l', long, value_name = "SELECTOR", requires = "all")]
    pub selector: Option<String>,
    /// The repository: a local checkout or a URL (else found from each object)
    #[arg(long, value_name = "PATH|URL")]
    pub repo: Option<String>,
    /// The Git revision to put back (else the tracked branch's tip, or HEAD of the local
    /// checkout in use)
    #[arg(long, value_name = "REV")]
    pub to: Option<String>,
    /// Do every step with dryRun=All: nothing is written
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Apply as this field manager (else the reconciler's: kustomize-controller,
    /// argocd-controller, the pipeline's kubectl, else kubectl-gitops)
    #[arg(long, value_name = "NAME")]
    pub field_manager: Option<String>,
    /// Leave a field alone: KIND[.GROUP][/NAME]:/json/pointer, or manager=NAME (repeatable)
    #[arg(long = "ignore", value_name = "RULE")]
    pub ignore: Vec<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = crate::report::RevertFormat::Text, value_name = "FORMAT")]
    pub output: crate::report::RevertFormat,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// What to follow: TYPE, TYPE/NAME (as kubectl accepts them); every object with a source in
    /// the namespace if none
    #[arg(value_name = "TYPE[/NAME]")]
    pub objects: Vec<String>,
    /// Label selector, as in kubectl
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The repository: a local checkout or a URL (else found from each object)
    #[arg(long, value_name = "PATH|URL")]
    pub repo: Option<String>,
    /// auto: prove in-sync offline, dry-run the rest; true: dry-run every object; false: never
    /// (only GET, LIST and WATCH requests)
    #[arg(long, value_enum, default_value_t = ServerSide::Auto, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub server_side: ServerSide,
    /// Dry runs in flight at once (the first evaluation)
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Ignore a field: KIND[.GROUP][/NAME]:/json/pointer, or manager=NAME (repeatable)
    #[arg(long = "ignore", value_name = "RULE")]
    pub ignore: Vec<String>,
    /// How often to look for new commits on the tracked branches (fetch for remote
    /// repositories, HEAD for a local checkout)
    #[arg(long, default_value = "1m", value_name = "DURATION", value_parser = parse_interval)]
    pub git_interval: Duration,
    /// Output format: one line per event (text), or one DriftEvent JSON object per line
    #[arg(short = 'o', long, value_enum, default_value_t = crate::report::WatchFormat::Text, value_name = "FORMAT")]
    pub output: crate::report::WatchFormat,
    /// Run CMD (with `sh -c`) once per event, the event's JSON on its stdin; one at a time
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// How long one --exec run may take before it is killed
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_interval)]
    pub exec_timeout: Duration,
    /// Exit 1 at the first drift (drifted, missing or orphaned), including drift found at start
    #[arg(long)]
    pub exit_on_drift: bool,
    /// Stop after this long (30s, 10m, 2h); exit 0 unless --exit-on-drift saw drift
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub timeout: Option<Duration>,
}

/// A positive duration, written as `--request-timeout` takes it: `1m`, `30s`, `500ms`, `1h`.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let RequestTimeout(d) = parse_request_timeout(text)?;
    if d.is_zero() {
        return Err(format!(
            "invalid duration '{text}': it must be more than zero"
        ));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct StampArgs {
    /// A file, directory or kustomization in the repository
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The repository (else the one around PATH)
    #[arg(long, value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// The revision to render (else HEAD)
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Stamp even when PATH has uncommitted changes (the committed tree is still what is rendered)
    #[arg(long)]
    pub allow_dirty: bool,
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = InfoFormat::Text, value_name = "FORMAT")]
    pub output: InfoFormat,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = InfoFormat::Text, value_name = "FORMAT")]
    pub output: InfoFormat,
}

/// `kubectl gitops completion SHELL`. (`kubectl gitops <TAB>` completes through kubectl and the
/// `kubectl_complete-gitops` helper instead, with names from the kubeconfig and the cluster.)
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to print the script for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Parses kubectl's `--request-timeout`: `0`, a plain number of seconds, or a Go-style duration
/// such as `500ms`, `30s`, `1m30s`, `2h`.
fn parse_request_timeout(text: &str) -> Result<RequestTimeout, String> {
    let bad = || {
        format!("invalid duration '{text}': use a number of seconds or a unit: 500ms, 30s, 1m, 1h")
    };
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(RequestTimeout(Duration::from_secs(seconds)));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * seconds_per_unit);
    }
    Ok(RequestTimeout(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_accepts_what_kubectl_accepts() {
        let cases = [
            ("0", Some(0)),
            ("5", Some(5_000)),
            ("500ms", Some(500)),
            ("30s", Some(30_000)),
            ("1m30s", Some(90_000)),
            ("2h", Some(7_200_000)),
            ("1.5s", Some(1_500)),
            ("", None),
            ("5x", None),
            ("s", None),
            ("-1", None),
        ];
        for (text, want) in cases {
            let got = parse_request_timeout(text)
                .ok()
                .map(|t| t.0.as_millis() as u64);
            assert_eq!(got, want, "--request-timeout={text}");
        }
        assert_eq!(parse_request_timeout("0").unwrap().limit(), None);
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        for args in [
            &["kubectl-gitops", "--context", "dev", "-n", "web", "context"][..],
            &["kubectl-gitops", "context", "--context", "dev", "-n", "web"][..],
            &[
                "kubectl-gitops",
                "--context=dev",
                "context",
                "--namespace=web",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(cli.global.context, ["dev"], "{args:?}");
            assert_eq!(cli.global.namespace.as_deref(), Some("web"), "{args:?}");
            assert!(matches!(cli.command, Command::Context(_)));
        }
    }

    #[test]
    fn verbose_takes_an_optional_level() {
        let level = |args: &[&str]| Cli::try_parse_from(args).unwrap().global.verbose;
        assert_eq!(level(&["k", "version"]), None);
        assert_eq!(level(&["k", "-v", "version"]), Some(1));
        assert_eq!(level(&["k", "version", "-v=2"]), Some(2));
        assert_eq!(level(&["k", "--verbose", "version"]), Some(1));
    }

    #[test]
    fn impersonation_groups_repeat() {
        let cli = Cli::try_parse_from([
            "k",
            "context",
            "--as",
            "alice",
            "--as-group",
            "a",
            "--as-group",
            "b",
        ])
        .unwrap();
        assert_eq!(cli.global.as_user.as_deref(), Some("alice"));
        assert_eq!(cli.global.as_group, ["a", "b"]);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
