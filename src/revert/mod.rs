//! `kubectl gitops revert`: puts objects back the way Git says. The only command that writes, so
//! it plans everything before the first write, shows it, asks, and makes each write conditional
//! on the version of the object it was planned from.
//!
//! Per object: a server-side apply of desired with force, under the reconciler's field manager,
//! carrying the `resourceVersion` and `uid` it was planned from (a concurrent change or
//! deletion is a 409: nothing written); then a JSON patch removing the fields Git does not
//! declare that only out-of-band managers own, whose first operation tests the
//! `resourceVersion` the apply returned (a change in between fails it: the change is kept). A
//! missing object is created again by a server-side apply without force, so that someone who
//! created it meanwhile keeps their values. Fields a cluster controller owns (an HPA's
//! replicas) and fields an ignore rule names keep their live value. Nothing is ever deleted.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::Outcome;
use crate::cli::{GlobalArgs, RevertArgs};
use crate::cluster::discovery::{Discovery, Resource};
use crate::cluster::{Cluster, ClusterError};
use crate::defaults;
use crate::drift::{self, Change, ObjectReport, Offline, Status};
use crate::engine::{Engine, Evaluated, Options, Scope, ServerSide, Work};
use crate::env::Env;
use crate::fields::{FieldPath, ManagedFields, Segment};
use crate::normalize::{self, IgnoreRule};
use crate::object::ObjectKey;
use crate::report::{
    self, HeldField, Log, Notice, RevertAction, RevertFormat, RevertItem, RevertReport,
    RevertResult,
};
use crate::source::Reconciler;
use crate::text::single_line;

pub async fn run(
    global: &GlobalArgs,
    args: &RevertArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    for arg in &args.objects {
        if !arg.contains('/') {
            bail!(
                "revert needs TYPE/NAME, got '{arg}'; use --all to revert every drifted object \
                 in scope"
            );
        }
    }
    if global.all_namespaces && !args.objects.is_empty() {
        bail!("a resource cannot be reverted by name across all namespaces; use -n NS, or --all");
    }
    let mut ignore = Vec::new();
    for text in &args.ignore {
        ignore.push(IgnoreRule::parse_flag(text).map_err(anyhow::Error::msg)?);
    }
    let scope = Scope {
        objects: Vec::new(),
        files: args.files.clone(),
        selector: args.selector.clone(),
        all_namespaces: global.all_namespaces,
        repo: args.repo.clone(),
        against: args.to.clone(),
    };
    let options = Options {
        server_side: ServerSide::Auto,
        concurrency: 8,
        ignore,
        refresh_discovery: false,
        summaries: false,
    };
    let mut engine = Engine::connect(
        &crate::commands::connect_options(global)?,
        env,
        scope.clone(),
        options,
    )
    .await?;

    // What is in scope, evaluated as `diff` evaluates it.
    let mut notices = Vec::new();
    let (evaluated, mut failed) = if args.all {
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
        (targets, failed)
    } else {
        named(&mut engine, &args.objects, scope, env, log, err).await?
    };

    // The plan: every write decided before the first is sent.
    let manager_flag = args.field_manager.as_deref();
    let discovery = engine.discovery.snapshot();
    let mut plans: Vec<Plan> = evaluated
        .into_iter()
        .map(|e| plan(e, manager_flag, &discovery))
        .collect();
    plans.sort_by(|a, b| a.key.cmp(&b.key));
    let writes = plans.iter().filter(|p| p.writes()).count();

    // What will change: the diff of it, then the warnings, then the question.
    let shown: Vec<ObjectReport> = plans
        .iter()
        .filter(|p| p.writes())
        .map(|p| p.shown.clone())
        .collect();
    let ask = writes > 0 && !args.yes && !args.dry_run;
    if writes > 0 {
        let drift = drift::DriftReport::new("auto", shown);
        match args.output {
            RevertFormat::Text => report::render_diff(out, &drift, report::DiffFormat::Diff)?,
            // Machine output keeps stdout for the report; a person about to answer sees the
            // diff on stderr.
            _ if ask && env.stdin_tty => {
                report::render_diff(err, &drift, report::DiffFormat::Diff)?
            }
            _ => {}
        }
        out.flush()?;
    }
    notices.extend(plan_notices(&plans));
    report::render_notices(err, &notices)?;
    if ask {
        if !env.stdin_tty {
            bail!(
                "not reverting {writes} object{} without confirmation: stdin is not a terminal; \
                 pass --yes to revert, or --dry-run to try it (nothing was written)",
                plural(writes)
            );
        }
        let question = format!(
            "Revert {writes} object{} in context '{}'?",
            plural(writes),
            engine.cluster.target.context
        );
        let stdin = std::io::stdin();
        if !report::confirm(&mut stdin.lock(), err, &question)? {
            writeln!(err, "Nothing was written.")?;
            return Ok(Outcome::Clean);
        }
    }

    test_hook(env, "planned", None, err)?;
    let mut items = Vec::with_capacity(plans.len());
    for plan in plans {
        items.push(execute(&engine.cluster, plan, args.dry_run, env, log, err).await?);
    }
    let report = RevertReport::new(args.dry_run, items);
    report::render_revert(out, &report, args.output)?;
    failed |= !report.all_good();
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}

/// The named objects: those that exist are evaluated by name; those that do not are looked
/// for among the objects Git declares next to the others in the namespace (missing ones).
async fn named(
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

/// What to do with one object, decided before anything is written.
struct Plan {
    key: ObjectKey,
    /// The drift shown before the question: what will change (held fields left out).
    shown: ObjectReport,
    step: Step,
    manager: Option<String>,
    held: Vec<HeldField>,
    reconciler: Option<Reconciler>,
    /// Values that must never appear in a message (a Secret's).
    secrets: Vec<String>,
}

enum Step {
    Apply(Box<ApplyStep>),
    Create {
        resource: Resource,
        body: Value,
    },
    /// No write: this result, this message.
    Done(RevertResult, String),
}

struct ApplyStep {
    resource: Resource,
    live: Value,
    /// Desired, with held fields at their live value, the reconciler's bookkeeping kept, and
    /// the planned `resourceVersion` and `uid`.
    body: Value,
    resource_version: String,
    removals: Vec<FieldPath>,
}

impl Plan {
    fn writes(&self) -> bool {
        matches!(self.step, Step::Apply(_) | Step::Create { .. })
    }
}

fn plan(e: Evaluated, manager_flag: Option<&str>, discovery: &Discovery) -> Plan {
    let Evaluated {
        report,
        work,
        missing,
        ..
    } = e;
    let key = report.object.clone();
    let done = |result, message: &str| Step::Done(result, message.to_owned());
    let mut plan = Plan {
        key: key.clone(),
        shown: report.clone(),
        step: done(RevertResult::Unchanged, "already as Git says"),
        manager: None,
        held: Vec::new(),
        reconciler: None,
        secrets: Vec::new(),
    };
    match (report.status, work, missing) {
        (Status::Error, _, _) => {
            plan.step = done(
                RevertResult::Failed,
                report.error.as_deref().unwrap_or("could not be evaluated"),
            );
        }
        (Status::NoSource, _, _) => {
            plan.step = done(
                RevertResult::Skipped,
                "no source found in Git: nothing to put back",
            );
        }
        (Status::Orphaned, _, _) => {
            plan.step = done(
                RevertResult::Skipped,
                "Git no longer declares it, and revert never deletes",
            );
        }
        (Status::InSync, work, _) => {
            plan.reconciler = work.and_then(|w| w.located.reconciler.clone());
        }
        (Status::Missing, _, Some(missing)) => {
            let api_version = missing.desired["apiVersion"].as_str().unwrap_or_default();
            let resource = discovery.for_kind(api_version, &key.kind).cloned();
            plan.secrets = secret_values(&key, &[&missing.desired]);
            plan.manager = Some(manager_flag.map_or(missing.manager.clone(), str::to_owned));
            plan.reconciler = missing.reconciler.clone();
            plan.step = match resource {
                Some(resource) => Step::Create {
                    resource,
                    body: missing.desired,
                },
                None => done(RevertResult::Failed, "the server does not serve its kind"),
            };
        }
        (Status::Missing, _, None) => {
            plan.step = done(
                RevertResult::Failed,
                "missing, and its source could not be read",
            );
        }
        (Status::Drifted, Some(work), _) => plan_apply(&mut plan, &work, manager_flag),
        (Status::Drifted, None, _) => {
            plan.step = done(RevertResult::Failed, "drifted, but its state was not kept");
        }
    }
    plan
}

/// The apply of desired and the removals, for a drifted object.
fn plan_apply(plan: &mut Plan, work: &Work, manager_flag: Option<&str>) {
    let manager = manager_flag.map_or_else(|| work.manager(), str::to_owned);
    plan.manager = Some(manager.clone());
    plan.reconciler = work.located.reconciler.clone();
    let Some(mut body) = work.desired() else {
        plan.step = Step::Done(
            RevertResult::Skipped,
            "Git no longer declares it, and revert never deletes".into(),
        );
        return;
    };
    plan.secrets = secret_values(&plan.key, &[&body, &work.live]);
    let ignored: BTreeSet<&str> = plan.shown.ignored.iter().map(|f| f.path.as_str()).collect();
    let changes: &[Change] = match (&work.dry_run, &work.offline) {
        (Some(Ok(changes)), _) => changes,
        (_, Offline::Drifted(changes)) => changes,
        _ => &[],
    };
    // Fields left as they are: their live value goes into the apply.
    for change in changes {
        let path = change.path.to_string();
        let rule = plan
            .shown
            .ignored
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.ignored_by.clone());
        let controller = controller_owner(&work.managed, &change.path, &work.reconciler);
        if rule.is_none() && controller.is_none() {
            continue;
        }
        if !keep_live(&mut body, &change.path, change.live.as_ref()) {
            plan.step = Step::Done(
                RevertResult::Skipped,
                format!("{path} must be left as it is, and the apply cannot express that"),
            );
            return;
        }
        if plan.held.iter().all(|h| h.path != path) {
            plan.held.push(HeldField {
                path,
                manager: controller,
                ignored_by: rule,
            });
        }
    }
    let held: BTreeSet<String> = plan.held.iter().map(|h| h.path.clone()).collect();
    plan.shown.fields.retain(|f| !held.contains(&f.path));
    drift::keep_bookkeeping(&mut body, &work.live, &work.managed, &manager);
    let resource_version = work.live["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), resource_version.clone().into());
        if let Some(uid) = work.live["metadata"]["uid"].as_str() {
            meta.insert("uid".into(), uid.into());
        }
    }
    let removals: Vec<FieldPath> = work
        .extra
        .iter()
        .filter(|c| !ignored.contains(c.path.to_string().as_str()))
        .map(|c| c.path.clone())
        .collect();
    if plan.shown.fields.is_empty() {
        let message = if held.is_empty() {
            "already as Git says"
        } else {
            "only fields that are left alone differ"
        };
        plan.step = Step::Done(RevertResult::Unchanged, message.into());
        return;
    }
    plan.step = Step::Apply(Box::new(ApplyStep {
        resource: work.resource.clone(),
        live: work.live.clone(),
        body,
        resource_version,
        removals,
    }));
}

/// The cluster component (not the reconciler, not out of band) that owns `path`, if any:
/// its value is left alone.
fn controller_owner(
    managed: &ManagedFields,
    path: &FieldPath,
    reconciler: &[String],
) -> Option<String> {
    managed
        .owners(path)
        .into_iter()
        .find(|e| {
            normalize::SYSTEM_MANAGERS.contains(&e.manager.as_str())
                && e.manager != "before-first-apply"
                && !reconciler.contains(&e.manager)
        })
        .map(|e| e.manager.clone())
}

/// Sets `path` in `body` to `live` (or removes it when live has none), so that the apply
/// leaves the field as it is. False when the path cannot be expressed in `body`.
fn keep_live(body: &mut Value, path: &FieldPath, live: Option<&Value>) -> bool {
    let segments = path.segments();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut here = body;
    for segment in parents {
        here = match step_into(here, segment, live.is_some()) {
            Some(next) => next,
            None => return live.is_none(),
        };
    }
    match (last, live) {
        (Segment::Field(name), Some(value)) => match here.as_object_mut() {
            Some(map) => {
                map.insert(name.clone(), value.clone());
                true
            }
            None => false,
        },
        (Segment::Field(name), None) => {
            if let Some(map) = here.as_object_mut() {
                map.remove(name);
            }
            true
        }
        (segment, live) => {
            let Some(items) = here.as_array_mut() else {
                return live.is_none();
            };
            let position = items.iter().position(|item| matches(item, segment));
            match (position, live) {
                (Some(i), Some(value)) => items[i] = value.clone(),
                (None, Some(value)) => items.push(value.clone()),
                (Some(i), None) => {
                    items.remove(i);
                }
                (None, None) => {}
            }
            true
        }
    }
}

/// One step down `path` in a desired object, creating maps (and, for keyed list items, the
/// item with its keys) when `create`.
fn step_into<'a>(here: &'a mut Value, segment: &Segment, create: bool) -> Option<&'a mut Value> {
    match segment {
        Segment::Field(name) => {
            let map = here.as_object_mut()?;
            if !map.contains_key(name) {
                if !create {
                    return None;
                }
                map.insert(name.clone(), Value::Object(Default::default()));
            }
            map.get_mut(name)
        }
        Segment::Index(i) => here.as_array_mut()?.get_mut(*i),
        Segment::Key(_) | Segment::Value(_) => {
            let items = here.as_array_mut()?;
            let position = items.iter().position(|item| matches(item, segment));
            let index = match (position, segment) {
                (Some(i), _) => i,
                (None, Segment::Key(keys)) if create => {
                    let mut item = serde_json::Map::new();
                    for (k, v) in keys {
                        item.insert(k.clone(), serde_json::from_str(v).ok()?);
                    }
                    items.push(Value::Object(item));
                    items.len() - 1
                }
                _ => return None,
            };
            items.get_mut(index)
        }
    }
}

/// Whether a list item is the one `segment` names. Like [`FieldPath::resolve`]: an item written
/// without `protocol` matches the server's default `TCP` ([`defaults::fills_list_key`]).
fn matches(item: &Value, segment: &Segment) -> bool {
    match segment {
        Segment::Key(keys) => keys.iter().all(|(k, v)| match item.get(k) {
            Some(actual) => serde_json::from_str::<Value>(v).is_ok_and(|want| &want == actual),
            None => defaults::fills_list_key(keys.keys().map(String::as_str), k, v),
        }),
        Segment::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|want| &want == item),
        Segment::Index(_) | Segment::Field(_) => false,
    }
}

/// A Secret's values as they could appear in a server message: Git's and live's, plain and
/// base64.
fn secret_values(key: &ObjectKey, objects: &[&Value]) -> Vec<String> {
    if !(key.group.is_empty() && key.kind == "Secret") {
        return Vec::new();
    }
    let mut values = BTreeSet::new();
    for object in objects {
        for section in ["data", "stringData"] {
            for value in object[section]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                    values.insert(text.to_owned());
                    values.insert(drift::base64(text.as_bytes()));
                }
            }
        }
    }
    values.into_iter().collect()
}

/// `message` with every Secret value replaced (longest first, so that no part of one shows).
fn redact(message: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = message.to_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), "(hidden)");
    }
    text
}

/// RFC 6901 pointers for the removals, resolved in `object`, ordered so that removing one
/// never shifts the index of another (later list items first), none inside another.
fn removal_pointers(removals: &[FieldPath], object: &Value) -> Vec<String> {
    let mut pointers: Vec<String> = removals
        .iter()
        .filter_map(|p| p.to_json_pointer(object))
        .filter(|p| !p.is_empty())
        .collect();
    pointers.sort_by_key(|p| pointer_order(p));
    pointers.dedup();
    let mut kept: Vec<String> = Vec::new();
    for p in pointers {
        if !kept.iter().any(|k| p.starts_with(&format!("{k}/"))) {
            kept.push(p);
        }
    }
    kept.sort_by_key(|p| std::cmp::Reverse(pointer_order(p)));
    kept
}

/// Pointer segments, numbers compared as numbers.
fn pointer_order(pointer: &str) -> Vec<(u64, String)> {
    pointer
        .split('/')
        .map(|s| match s.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, s.to_owned()),
        })
        .collect()
}

/// The warnings and notes shown before the question: the reconcilers involved, and the fields
/// left alone.
fn plan_notices(plans: &[Plan]) -> Vec<Notice> {
    let mut notices = Vec::new();
    let mut seen = BTreeSet::new();
    for plan in plans.iter().filter(|p| p.writes()) {
        let Some(r) = &plan.reconciler else { continue };
        if !seen.insert(r.display()) {
            continue;
        }
        let objects: Vec<String> = plans
            .iter()
            .filter(|p| p.writes() && p.reconciler.as_ref() == Some(r))
            .map(|p| p.key.name.clone())
            .collect();
        let what = format!("{} ({})", r.display(), objects.join(", "));
        notices.push(match (r.suspended, r.kind.as_str()) {
            (true, "Application") => Notice::Warning(format!(
                "{what} has no automated sync: nothing will keep these objects as Git says \
                 after the revert, and the drift may be deliberate"
            )),
            (true, _) => Notice::Warning(format!(
                "{what} is suspended: nothing will keep these objects as Git says after the \
                 revert, and the drift may be deliberate"
            )),
            (false, "Application") => Notice::Note(format!(
                "{what} syncs automatically: with self-heal it would put these objects back by \
                 itself"
            )),
            (false, _) => Notice::Note(format!(
                "{what} is active: it would put these objects back at its next reconciliation \
                 anyway"
            )),
        });
    }
    for plan in plans.iter().filter(|p| p.writes()) {
        let pending = plan
            .shown
            .fields
            .iter()
            .filter(|f| matches!(f.why, drift::Why::Pending { .. }))
            .count();
        if pending > 0 {
            notices.push(Notice::Note(format!(
                "{}: {pending} field{} changed in Git after the applied commit (pending) \
                 will be applied too; --to REV picks another revision",
                plan.key,
                plural(pending)
            )));
        }
    }
    for plan in plans {
        for held in plan.held.iter().filter(|h| h.manager.is_some()) {
            notices.push(Notice::Note(format!(
                "{} {} is left to {} (a controller owns it, not an out-of-band change)",
                plan.key,
                held.path,
                held.manager.as_deref().unwrap_or_default()
            )));
        }
    }
    notices
}

/// Test only: runs `KUBECTL_GITOPS_TEST_HOOK` with the stage (`planned`, `applied`) and the
/// object, and waits for it, so that a test can change an object between two steps.
fn test_hook(env: &Env, stage: &str, key: Option<&ObjectKey>, err: &mut dyn Write) -> Result<()> {
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
async fn execute(
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
                    pointers.join(", ")
                )
            });
            let removed: Vec<String> = removals
                .iter()
                .filter(|p| p.to_json_pointer(base).is_some())
                .map(FieldPath::to_string)
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &[&str]) -> FieldPath {
        FieldPath::fields(text.iter().copied())
    }

    #[test]
    fn removals_never_shift_each_other() {
        let object = json!({"metadata": {"labels": {"a/b": "x", "team": "y"}},
            "spec": {"containers": [{"name": "web"}, {"name": "one"}, {"name": "two"}],
                     "env": [1, 2]}});
        let key = |name: &str| {
            path(&["spec", "containers"]).child(Segment::key([("name", &json!(name))]))
        };
        let removals = vec![
            key("one"),
            key("two"),
            path(&["metadata", "labels", "a/b"]),
            path(&["spec", "env"]),
            // Inside a removed field: dropped.
            key("two").child(Segment::field("image")),
            // Not there: dropped.
            key("three"),
        ];
        assert_eq!(
            removal_pointers(&removals, &object),
            [
                "/spec/env",
                "/spec/containers/2",
                "/spec/containers/1",
                "/metadata/labels/a~1b"
            ]
        );
        // Index 10 sorts after index 9 (as a number, not as text).
        let many = json!({"l": (0..11).map(|i| json!({"n": i})).collect::<Vec<_>>()});
        let removals: Vec<FieldPath> = [9, 10]
            .iter()
            .map(|i| path(&["l"]).child(Segment::key([("n", &json!(i))])))
            .collect();
        assert_eq!(removal_pointers(&removals, &many), ["/l/10", "/l/9"]);
    }

    #[test]
    fn held_fields_keep_their_live_value_in_the_apply() {
        let mut body = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "a", "ports": [{"containerPort": 80}]}]}}}});
        assert!(keep_live(
            &mut body,
            &path(&["spec", "replicas"]),
            Some(&json!(5))
        ));
        assert_eq!(body["spec"]["replicas"], 5);
        // A keyed item, the port written without its defaulted protocol.
        let port = path(&["spec", "template", "spec", "containers"])
            .child(Segment::key([("name", &json!("web"))]))
            .child(Segment::field("ports"))
            .child(Segment::key([
                ("containerPort", &json!(80)),
                ("protocol", &json!("TCP")),
            ]))
            .child(Segment::field("hostPort"));
        assert!(keep_live(&mut body, &port, Some(&json!(8080))));
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"],
            8080
        );
        // A field Git dropped and a rule holds: put back at its live value.
        assert!(keep_live(
            &mut body,
            &path(&["metadata", "annotations", "note"]),
            Some(&json!("kept"))
        ));
        assert_eq!(body["metadata"]["annotations"]["note"], "kept");
        // Absent live: absent in the apply.
        assert!(keep_live(&mut body, &path(&["spec", "replicas"]), None));
        assert!(body["spec"].get("replicas").is_none());
    }

    #[test]
    fn a_controller_owner_is_told_from_the_reconciler_and_out_of_band() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
             "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:paused": {}}}}]}});
        let managed = ManagedFields::of(&live).unwrap();
        let reconciler = ["kubectl".to_owned()];
        assert_eq!(
            controller_owner(&managed, &path(&["spec", "replicas"]), &reconciler).as_deref(),
            Some("kube-controller-manager")
        );
        assert_eq!(
            controller_owner(&managed, &path(&["spec", "paused"]), &reconciler),
            None
        );
    }

    #[test]
    fn reconcilers_are_warned_about_once_each() {
        let reconciler = |kind: &str, name: &str, suspended: bool| Reconciler {
            kind: kind.into(),
            namespace: "gitops".into(),
            name: name.into(),
            status: None,
            message: None,
            suspended,
        };
        let create = |name: &str, r: Option<Reconciler>| Plan {
            key: ObjectKey {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: Some("shop".into()),
                name: name.into(),
            },
            shown: ObjectReport {
                object: ObjectKey {
                    group: String::new(),
                    kind: "ConfigMap".into(),
                    namespace: None,
                    name: name.into(),
                },
                status: Status::Missing,
                verdict: None,
                source: None,
                fields: vec![],
                ignored: vec![],
                error: None,
            },
            step: Step::Create {
                resource: Resource {
                    group: String::new(),
                    version: "v1".into(),
                    kind: "ConfigMap".into(),
                    plural: "configmaps".into(),
                    singular: "configmap".into(),
                    short_names: vec![],
                    namespaced: true,
                    verbs: vec![],
                },
                body: json!({}),
            },
            manager: None,
            held: vec![],
            reconciler: r,
            secrets: vec![],
        };
        let plans = vec![
            create("a", Some(reconciler("Application", "shop", true))),
            create("b", Some(reconciler("Application", "shop", true))),
            create("c", Some(reconciler("Kustomization", "apps", false))),
            create("d", None),
        ];
        let notices = plan_notices(&plans);
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(matches!(&notices[0], Notice::Warning(t)
            if t.starts_with("Application gitops/shop (a, b) has no automated sync")));
        assert!(matches!(&notices[1], Notice::Note(t)
            if t.starts_with("Kustomization gitops/apps (c) is active")));
    }

    #[test]
    fn secret_values_never_reach_a_message() {
        let key = ObjectKey {
            group: String::new(),
            kind: "Secret".into(),
            namespace: Some("ns".into()),
            name: "s".into(),
        };
        let desired = json!({"stringData": {"password": "hunter2"}});
        let live = json!({"data": {"password": "Y2hhbmdlZA=="}});
        let secrets = secret_values(&key, &[&desired, &live]);
        let message = "invalid: data[password]: hunter2 / aHVudGVyMg== / Y2hhbmdlZA==";
        assert_eq!(
            redact(message, &secrets),
            "invalid: data[password]: (hidden) / (hidden) / (hidden)"
        );
        let cm = ObjectKey {
            kind: "ConfigMap".into(),
            ..key
        };
        assert!(secret_values(&cm, &[&desired]).is_empty());
    }
}
