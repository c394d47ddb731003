//! What a person is told before being asked to revert: the reconcilers that will act on the
//! objects, the pending fields that go in too, the fields left to a controller.

use std::collections::BTreeSet;

use super::Plan;
use crate::drift;
use crate::report::Notice;
use crate::text::plural;

/// The warnings and notes shown before the question: the reconcilers involved, and the fields
/// left alone.
pub fn plan_notices(plans: &[Plan]) -> Vec<Notice> {
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
            // helm-controller corrects drift only when asked to (driftDetection).
            (false, "HelmRelease") => Notice::Note(format!(
                "{what} puts these objects back by itself only with spec.driftDetection.mode: \
                 enabled; otherwise they stay as they are until its next upgrade"
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
    let mut releases = BTreeSet::new();
    for plan in plans.iter().filter(|p| p.writes()) {
        if let Some((release, revision)) = &plan.helm
            && releases.insert(release.clone())
        {
            notices.push(Notice::Note(format!(
                "{release}: its objects go back to the manifest of release revision \
                 {revision}, applied as helm-controller; no new release revision is made, \
                 and changes pending in Git wait for helm-controller"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::super::plan::Step;
    use super::*;
    use crate::cluster::discovery::Resource;
    use crate::drift::{ObjectReport, Status};
    use crate::object::ObjectKey;
    use crate::source::Reconciler;
    use serde_json::json;

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
                not_compared: Vec::new(),
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
            helm: None,
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
}
