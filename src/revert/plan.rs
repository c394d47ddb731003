//! The plan of a revert, pure: an evaluated object in, the one write to make out (an apply of
//! desired with the fields left alone at their live value, the removals after it, or a
//! create), decided before anything is written.

use std::collections::BTreeSet;

use serde_json::Value;

use super::secrets::secret_values;
use crate::cluster::discovery::{Discovery, Resource};
use crate::defaults;
use crate::drift::{self, Change, ObjectReport, Offline, Status};
use crate::engine::{Evaluated, Work};
use crate::fields::{FieldPath, ManagedFields, Segment};
use crate::normalize;
use crate::object::ObjectKey;
use crate::report::{HeldField, RevertResult};
use crate::source::Reconciler;

/// Why an object whose encrypted values could not be decrypted is not reverted.
const NOT_DECRYPTED: &str = "encrypted with SOPS in Git, and not decrypted here: not written, \
     as its values are unknown; give sops your key (SOPS_AGE_KEY_FILE, or your PGP or KMS \
     access) and run again";

/// What to do with one object, decided before anything is written.
pub struct Plan {
    pub key: ObjectKey,
    /// The drift shown before the question: what will change (held fields left out).
    pub shown: ObjectReport,
    pub(super) step: Step,
    pub(super) manager: Option<String>,
    pub(super) held: Vec<HeldField>,
    pub(super) reconciler: Option<Reconciler>,
    /// Values that must never appear in a message (a Secret's).
    pub(super) secrets: Vec<String>,
    /// For an object of a Helm release: the HelmRelease and the release revision it goes
    /// back to.
    pub(super) helm: Option<(String, u64)>,
}

pub(super) enum Step {
    Apply(Box<ApplyStep>),
    Create {
        resource: Resource,
        body: Value,
    },
    /// No write: this result, this message.
    Done(RevertResult, String),
}

pub(super) struct ApplyStep {
    pub(super) resource: Resource,
    pub(super) live: Value,
    /// Desired, with held fields at their live value, the reconciler's bookkeeping kept, and
    /// the planned `resourceVersion` and `uid`.
    pub(super) body: Value,
    pub(super) resource_version: String,
    pub(super) removals: Vec<FieldPath>,
}

impl Plan {
    /// Whether carrying out the plan writes to the cluster.
    pub fn writes(&self) -> bool {
        matches!(self.step, Step::Apply(_) | Step::Create { .. })
    }
}

/// Every object's plan, in object order: every write decided before the first is sent.
pub fn plan_all(
    evaluated: Vec<Evaluated>,
    manager_flag: Option<&str>,
    discovery: &Discovery,
) -> Vec<Plan> {
    let mut plans: Vec<Plan> = evaluated
        .into_iter()
        .map(|e| plan(e, manager_flag, discovery))
        .collect();
    plans.sort_by(|a, b| a.key.cmp(&b.key));
    plans
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
        helm: None,
    };
    match (report.status, work, missing) {
        // Without the key, desired holds live's values where Git's are encrypted: writing it
        // would claim Git's state without knowing it.
        (Status::Drifted | Status::Missing, _, _) if !report.not_compared.is_empty() => {
            plan.step = done(RevertResult::Failed, NOT_DECRYPTED);
        }
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
            plan.secrets.extend(missing.secrets.iter().cloned());
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
    let Some(mut body) = work.revert_target() else {
        plan.step = Step::Done(
            RevertResult::Skipped,
            "Git no longer declares it, and revert never deletes".into(),
        );
        return;
    };
    plan.secrets = secret_values(&plan.key, &[&body, &work.live]);
    plan.secrets.extend(work.located.secrets.iter().cloned());
    if let Some(h) = &work.located.helm {
        // The release manifest goes back, not Git's tip: pending fields are not written.
        plan.shown.fields.retain(|f| !f.why.is_pending());
        plan.helm = Some((format!("HelmRelease {}", h.helm_release), h.revision));
    }
    let ignored: BTreeSet<&str> = plan.shown.ignored.iter().map(|f| f.path.as_str()).collect();
    let changes: &[Change] = match (&work.dry_run, &work.offline) {
        (Some(Ok(changes)), _) => changes,
        (_, Offline::Drifted(changes)) => changes,
        _ => &[],
    };
    // Fields left as they are: their live value goes into the apply.
    // Paths as the report shows them (a key holding a value from a Secret hidden).
    let shown = |path: &FieldPath| drift::shown_path(path, &work.located.secrets);
    for change in changes {
        let path = shown(&change.path);
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
    if work.located.helm.is_some() {
        // As the dry run applies it, and as helm-controller's upgrade patches it: a field
        // rendered null is deleted, not stored as the empty string.
        crate::normalize::drop_nulls(&mut body);
    }
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
        .filter(|c| !ignored.contains(shown(&c.path).as_str()))
        .map(|c| c.path.clone())
        .collect();
    if plan.shown.fields.is_empty() {
        let message = if !held.is_empty() {
            "only fields that are left alone differ"
        } else if plan.helm.is_some() {
            "already as the release manifest says; changes pending in Git wait for helm-controller"
        } else {
            "already as Git says"
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &[&str]) -> FieldPath {
        FieldPath::fields(text.iter().copied())
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
}
