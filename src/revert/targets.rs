//! Which objects a revert acts on: `--all` of them in scope, or the ones named (found among
//! the missing when they do not exist).

use std::io::Write;

use anyhow::Result;

use crate::drift::Status;
use crate::engine::{Engine, Evaluated, Scope};
use crate::env::Env;
use crate::object::ObjectKey;
use crate::report::{Log, Notice};

/// Every object in scope that revert acts on (drifted, missing, or failed to evaluate), and a
/// note for each orphan it leaves alone; and whether some object or kind could not be
/// evaluated.
pub async fn all(
    engine: &mut Engine,
    env: &Env,
    log: &Log,
    err: &mut dyn Write,
) -> Result<(Vec<Evaluated>, bool, Vec<Notice>)> {
    let mut notices = Vec::new();
    let evaluation = engine.evaluate(env, log, err).await?;
    let failed = evaluation.failed;
    let mut targets = Vec::new();
    for e in evaluation.items {
        match e.report.status {
            Status::Drifted | Status::Missing | Status::Error => targets.push(e),
            Status::Orphaned => notices.push(Notice::Note(format!(
                "{} is left alone: Git no longer declares it, and revert never deletes",
                e.report.object
            ))),
            Status::InSync | Status::NoSource => {}
        }
    }
    Ok((targets, failed, notices))
}

/// The named objects: those that exist are evaluated by name; those that do not are looked
/// for among the objects Git declares next to the others in the namespace (missing ones).
pub async fn named(
    engine: &mut Engine,
    objects: &[String],
    scope: Scope,
    env: &Env,
    log: &Log,
    err: &mut dyn Write,
) -> Result<(Vec<Evaluated>, bool)> {
    let namespace = engine.cluster.target.namespace.clone();
    let mut present = Vec::new();
    let mut absent: Vec<(String, ObjectKey)> = Vec::new();
    for arg in objects {
        let (type_text, name) = arg.split_once('/').expect("checked: TYPE/NAME");
        let resource = engine
            .discovery
            .resolve(type_text)
            .await
            .map_err(|e| anyhow::anyhow!("{arg}: {e}"))?;
        let ns = resource.namespaced.then_some(namespace.as_str());
        match engine.cluster.get(&resource, ns, name).await? {
            Some(_) => present.push(arg.clone()),
            None => absent.push((
                arg.clone(),
                ObjectKey {
                    group: resource.group.clone(),
                    kind: resource.kind.clone(),
                    namespace: ns.map(str::to_owned),
                    name: name.to_owned(),
                },
            )),
        }
    }
    let mut items = Vec::new();
    let mut failed = false;
    if !present.is_empty() {
        engine.set_scope(Scope {
            objects: present,
            ..scope.clone()
        });
        let evaluation = engine.evaluate(env, log, err).await?;
        failed |= evaluation.failed;
        items.extend(evaluation.items);
    }
    if !absent.is_empty() {
        // Missing objects are found through their siblings: the whole namespace is evaluated,
        // and only the named ones kept (the others' problems are not this command's).
        engine.set_scope(scope);
        let evaluation = engine.evaluate(env, log, &mut std::io::sink()).await?;
        let mut found: Vec<Evaluated> = evaluation
            .items
            .into_iter()
            .filter(|e| e.report.status == Status::Missing)
            .filter(|e| absent.iter().any(|(_, key)| key == &e.report.object))
            .collect();
        for (arg, key) in &absent {
            if !found.iter().any(|e| &e.report.object == key) {
                failed = true;
                writeln!(
                    err,
                    "error: {arg}: not found in namespace \"{namespace}\", and no source of the \
                     objects there declares it"
                )?;
            }
        }
        items.append(&mut found);
    }
    Ok((items, failed))
}
