//! kubectl-gitops: a kubectl plugin that ties every live Kubernetes object to the Git repository,
//! file, lines and commit it came from, and reports drift, its cause, and how to undo it.
//!
//! The words used throughout:
//! - **live**: the object as it is in the cluster.
//! - **desired**: what Git renders for that object at a revision.
//! - **source**: where desired comes from: repository, file, lines, commit.
//! - **drift**: live differs from desired.
//! - **pending**: Git changed it after the revision that was applied; not applied yet.
//! - **out of band**: changed in the cluster, not through Git (`kubectl edit`, a patch).
//! - **reconciler**: what applies Git to the cluster: Flux, Argo CD, or a pipeline.

pub mod applied;
pub mod blame;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod completion;
pub mod defaults;
pub mod drift;
pub mod engine;
pub mod env;
pub mod fields;
pub mod git;
pub mod markers;
pub mod normalize;
pub mod object;
pub mod process;
pub mod render;
pub mod report;
pub mod revert;
pub mod schema;
pub mod source;
pub mod text;
pub mod watch;

use std::io::Write;

/// How a command ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report: in sync, or the command is done.
    Clean,
    /// `diff` found drift.
    Drift,
    /// Some objects failed; they were reported and the others were handled.
    Failed,
}

impl Outcome {
    /// The exit code, as `kubectl diff` and `flux diff` use them: 0, 1 (drift), 2 (error).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Drift => 1,
            Outcome::Failed => 2,
        }
    }
}

/// Runs one command line. Results go to `out`; the debug log and warnings go to `err`.
pub fn run(
    cli: cli::Cli,
    env: &env::Env,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    let outcome = runtime.block_on(commands::run(cli, env, out, err));
    // A credential plugin left hanging past --request-timeout is not waited for.
    runtime.shutdown_background();
    outcome
}

/// Answers one completion request (`kubectl_complete-gitops WORDS...`, or
/// `kubectl-gitops __complete WORDS...`): candidates on `out` in cobra's protocol, as kubectl
/// reads them. Nothing worth an error happens while a user presses TAB: what cannot be looked
/// up is not offered.
pub fn complete(words: &[String], env: &env::Env, out: &mut dyn Write) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answered = runtime.block_on(commands::complete(words, env, out));
    runtime.shutdown_background();
    answered
}
