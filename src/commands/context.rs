//! `kubectl gitops context`: which context, cluster, user and namespace we would use, and the
//! server's version (one `GET /version`).

use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use crate::Outcome;
use crate::cli::{ContextArgs, GlobalArgs};
use crate::cluster;
use crate::env::Env;
use crate::report::{self, ContextReport, Log};

pub async fn run(
    global: &GlobalArgs,
    args: &ContextArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let options = super::connect_options(global)?;
    let cluster = cluster::connect(&options, env).await?;
    log.debug(err, 1, || {
        format!(
            "context {} (cluster {}, user {}) from {:?}",
            cluster.target.context,
            cluster.target.cluster,
            cluster.target.user.as_deref().unwrap_or("(none)"),
            cluster.target.kubeconfig
        )
    });
    let started = Instant::now();
    let version = cluster.server_version().await?;
    log.debug(err, 1, || {
        format!(
            "GET {}/version: {} in {} ms",
            cluster.target.server,
            version.git_version,
            started.elapsed().as_millis()
        )
    });
    let report = ContextReport {
        target: cluster.target.clone(),
        server_version: version.into(),
    };
    report::render_context(out, &report, args.output)?;
    Ok(Outcome::Clean)
}
