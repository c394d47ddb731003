//! Carrying out a plan: the writes to the cluster, each conditional on the version of the
//! object it was planned from, and how each ended.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use super::Plan;
use super::patch::removal_pointers;
use super::plan::{ApplyStep, Step};
use crate::cluster::{Cluster, ClusterError};
use crate::env::Env;
use crate::object::ObjectKey;
use crate::report::{Log, RevertAction, RevertItem, RevertResult};
use crate::text::redact;
use crate::text::single_line;

/// Test only: runs `KUBECTL_GITOPS_TEST_HOOK` with the stage (`planned`, `applied`) and the
/// object, and waits for it, so that a test can change an object between two steps.
pub fn test_hook(
    env: &Env,
    stage: &str,
    key: Option<&ObjectKey>,
    err: &mut dyn Write,
) -> Result<()> {
    let Some(hook) = &env.test_hook else {
        return Ok(());
    };
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(hook).arg("test-hook").arg(stage);
    if let Some(key) = key {
        cmd.arg(&key.name);
    }
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("running the test hook: {e}"))?;
    if !status.success() {
        writeln!(err, "warning: the test hook failed ({status})")?;
    }
    Ok(())
}

/// Writes one object as planned and says how it ended.
pub async fn execute(
    cluster: &Cluster,
    plan: Plan,
    dry_run: bool,
    env: &Env,
    log: &Log,
    err: &mut dyn Write,
) -> Result<RevertItem> {
    let mut item = RevertItem {
        object: plan.key.clone(),
        result: RevertResult::Unchanged,
        action: RevertAction::None,
        field_manager: plan.manager.clone(),
        source: plan.shown.source.clone(),
        fields: plan.shown.fields.clone(),
        removed: Vec::new(),
        held: plan.held,
        reconciler: plan.reconciler,
        message: None,
    };
    let secrets = plan.secrets;
    let say = |e: &ClusterError| redact(&single_line(&e.to_string()), &secrets);
    let manager = plan.manager.unwrap_or_else(|| "kubectl-gitops".into());
    let ns = plan.key.namespace.as_deref();
    match plan.step {
        Step::Done(result, message) => {
            item.result = result;
            item.message = Some(message);
            if result != RevertResult::Reverted {
                item.fields.clear();
            }
        }
        Step::Create { resource, body } => {
            item.action = RevertAction::Create;
            log.debug(err, 1, || {
                format!("{}: create (apply without force)", plan.key)
            });
            let ns = ns.filter(|_| resource.namespaced);
            match cluster
                .apply(&resource, ns, &body, &manager, false, dry_run)
                .await
            {
                Ok(_) => item.result = RevertResult::Reverted,
                Err(e @ ClusterError::Api { code: 409, .. }) => {
                    item.result = RevertResult::Conflict;
                    item.message = Some(format!(
                        "created by someone else meanwhile, with other values; theirs are kept \
                         ({})",
                        say(&e)
                    ));
                }
                Err(e) => {
                    item.result = RevertResult::Failed;
                    item.message = Some(say(&e));
                }
            }
        }
        Step::Apply(step) => {
            item.action = RevertAction::Apply;
            let ApplyStep {
                resource,
                live,
                body,
                resource_version,
                removals,
            } = *step;
            let ns = ns.filter(|_| resource.namespaced);
            let name = plan.key.name.as_str();
            log.debug(err, 1, || {
                format!("{}: apply at resourceVersion {resource_version}", plan.key)
            });
            let applied = match cluster
                .apply(&resource, ns, &body, &manager, true, dry_run)
                .await
            {
                Ok(applied) => applied,
                Err(e) => {
                    // The apply carried the resourceVersion and uid it was planned from.
                    let (result, message) = match &e {
                        ClusterError::NotFound { .. } => (
                            RevertResult::Conflict,
                            "deleted since it was read; nothing written".to_owned(),
                        ),
                        ClusterError::Api {
                            code: 409, message, ..
                        } => (
                            RevertResult::Conflict,
                            format!(
                                "{} since it was read (resourceVersion {resource_version}); \
                                 nothing written, run revert again",
                                if message.contains("uid mismatch") {
                                    "deleted"
                                } else {
                                    "changed"
                                }
                            ),
                        ),
                        _ => (
                            RevertResult::Failed,
                            format!("{}; nothing written", say(&e)),
                        ),
                    };
                    item.result = result;
                    item.message = Some(message);
                    return Ok(item);
                }
            };
            test_hook(env, "applied", Some(&plan.key), err)?;
            // With --dry-run nothing was applied: the removals are tried on the object as it is.
            let base = if dry_run { &live } else { &applied };
            let tested = base["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let pointers = removal_pointers(&removals, base);
            item.result = RevertResult::Reverted;
            if pointers.is_empty() {
                if !dry_run && tested == resource_version {
                    item.result = RevertResult::Unchanged;
                    item.message = Some("the server found nothing to change".into());
                    item.fields.clear();
                }
                return Ok(item);
            }
            let mut ops = vec![serde_json::json!({
                "op": "test", "path": "/metadata/resourceVersion", "value": tested
            })];
            ops.extend(
                pointers
                    .iter()
                    .map(|p| serde_json::json!({"op": "remove", "path": p})),
            );
            log.debug(err, 1, || {
                format!(
                    "{}: JSON patch at resourceVersion {tested}: remove {}",
                    plan.key,
                    redact(&pointers.join(", "), &secrets)
                )
            });
            let removed: Vec<String> = removals
                .iter()
                .filter(|p| p.to_json_pointer(base).is_some())
                .map(|p| crate::drift::shown_path(p, &secrets))
                .collect();
            // Removed fields are said once, as removed.
            item.fields.retain(|f| !removed.contains(&f.path));
            match cluster
                .json_patch(&resource, ns, name, &Value::Array(ops), &manager, dry_run)
                .await
            {
                Ok(_) => item.removed = removed,
                Err(e) => {
                    // A failed `test` is a 422 like any invalid patch: the object's version
                    // tells which it was.
                    let now = cluster.get(&resource, ns, name).await;
                    let moved = match &now {
                        Ok(Some(o)) => o["metadata"]["resourceVersion"] != tested.as_str(),
                        Ok(None) => true,
                        Err(_) => false,
                    };
                    let kept = format!(
                        "Git's values were applied, but {} not removed",
                        removed.join(", ")
                    );
                    if moved {
                        item.result = RevertResult::Conflict;
                        item.message = Some(format!(
                            "{kept}: the object changed in between, and that change is kept; \
                             run revert again"
                        ));
                    } else {
                        item.result = RevertResult::Failed;
                        item.message = Some(format!("{kept}: {}", say(&e)));
                    }
                }
            }
        }
    }
    Ok(item)
}
