//! One file per subcommand: each wires cluster/Git/render steps and hands results to report/.

mod blame;
mod completion;
mod context;
mod diff;
mod fleet;
mod revert;
mod stamp;
mod trace;
mod watch;

use std::io::Write;

use anyhow::{Result, bail};

use crate::Outcome;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::cluster::kubeconfig::Selectors;
use crate::cluster::{ConnectOptions, Impersonation};
use crate::env::Env;
use crate::report::{self, Log};

pub use completion::complete;

/// Runs the parsed command line.
pub async fn run(cli: Cli, env: &Env, out: &mut dyn Write, err: &mut dyn Write) -> Result<Outcome> {
    let log = Log::new(cli.global.verbose);
    match &cli.command {
        Command::Context(args) => {
            fleet::single(&cli.global, env, "context", "it shows the one context used")?;
            context::run(&cli.global, args, env, &log, out, err).await
        }
        Command::Trace(args) => trace::run(&cli.global, args, env, &log, out, err).await,
        Command::Stamp(args) => stamp::run(args, env, &log, out, err),
        Command::Diff(args) => diff::run(&cli.global, args, env, &log, out, err).await,
        Command::Blame(args) => {
            fleet::single(&cli.global, env, "blame", "it reads one object's history")?;
            blame::run(&cli.global, args, env, &log, out, err).await
        }
        Command::Completion(args) => completion::script(args, out),
        Command::Watch(args) => watch::run(&cli.global, args, env, &log, out, err).await,
        Command::Version(args) => {
            report::render_version(out, &report::VersionReport::current(), args.output)?;
            Ok(Outcome::Clean)
        }
        Command::Revert(args) => {
            fleet::single(&cli.global, env, "revert", "it writes to the cluster")?;
            revert::run(&cli.global, args, env, &log, out, err).await
        }
    }
}

/// The connection options the global flags ask for.
pub(crate) fn connect_options(global: &GlobalArgs) -> Result<ConnectOptions> {
    let impersonate = match (&global.as_user, global.as_group.is_empty()) {
        (Some(user), _) => Some(Impersonation {
            user: user.clone(),
            groups: global.as_group.clone(),
        }),
        (None, true) => None,
        (None, false) => bail!("--as-group needs --as: name the user to impersonate"),
    };
    Ok(ConnectOptions {
        selectors: Selectors {
            kubeconfig: global.kubeconfig.clone(),
            // A fleet run gives each member its one context ([`fleet::member_flags`]).
            context: global.context.first().cloned(),
            cluster: global.cluster.clone(),
            user: global.user.clone(),
            namespace: global.namespace.clone(),
        },
        impersonate,
        request_timeout: global.request_timeout.and_then(|t| t.limit()),
    })
}
