//! Server-side-apply dry runs, a bounded number in flight, their answers compared with live.

use std::io::Write;
use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use super::{ServerSide, Work};
use crate::cluster::{Cluster, ClusterError};
use crate::drift;
use crate::schema::Schemas;
use crate::text::single_line;

/// Server-side-apply dry runs in flight, a bounded number at once.
pub(super) struct DryRuns {
    tasks: tokio::task::JoinSet<(usize, Result<Value, ClusterError>)>,
    permits: Arc<tokio::sync::Semaphore>,
    pub(super) started: usize,
}

impl DryRuns {
    pub(super) fn new(concurrency: u16) -> DryRuns {
        DryRuns {
            tasks: tokio::task::JoinSet::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(usize::from(concurrency))),
            started: 0,
        }
    }

    /// Starts the dry run of `w`, whose result goes to the work at `index`.
    pub(super) fn spawn(&mut self, cluster: &Cluster, index: usize, w: &Work) {
        let mut desired = w.desired().expect("only objects Git declares are dry-run");
        let cluster = cluster.clone();
        let resource = w.resource.clone();
        let ns = w.key.namespace.clone();
        let manager = w.manager();
        // As the reconciler applies it: with the bookkeeping labels it owns.
        drift::keep_bookkeeping(&mut desired, &w.live, &w.managed, &manager);
        if w.located.helm.is_some() {
            // As helm-controller's upgrade patches it: a field rendered null is deleted.
            crate::normalize::drop_nulls(&mut desired);
        }
        let permits = self.permits.clone();
        self.started += 1;
        self.tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let result = cluster
                .apply_dry_run(&resource, ns.as_deref(), &desired, &manager)
                .await;
            (index, result)
        });
    }

    /// Waits for every dry run and compares its answer with live.
    pub(super) async fn collect(
        mut self,
        work: &mut [Work],
        schemas: &Schemas,
        server_side: ServerSide,
        progress: &indicatif::ProgressBar,
        err: &mut dyn Write,
    ) -> Result<()> {
        let mut forbidden_said = false;
        while let Some(joined) = self.tasks.join_next().await {
            progress.inc(1);
            let (i, result) = joined.expect("a dry-run task does not panic");
            let w = &mut work[i];
            match result {
                Ok(after) => {
                    let node =
                        schemas.kind(&w.resource.group, &w.resource.version, &w.resource.kind);
                    w.dry_run = Some(Ok(drift::compare_objects(&after, &w.live, node)));
                }
                Err(ClusterError::Forbidden { message, .. }) if server_side == ServerSide::Auto => {
                    if !forbidden_said {
                        forbidden_said = true;
                        writeln!(
                            err,
                            "warning: dry runs are forbidden ({}); those verdicts are offline",
                            single_line(&message)
                        )?;
                    }
                }
                Err(e) => w.dry_run = Some(Err(single_line(&e.to_string()))),
            }
        }
        Ok(())
    }
}
