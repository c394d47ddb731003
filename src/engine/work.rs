//! What an evaluation hands its callers: each object's verdict and, where a caller needs it, the
//! work it was made from (revert writes desired back), a summary (watch follows it), or what
//! Git declares for an object the cluster lacks.

use serde_json::Value;

use crate::cluster::LiveObject;
use crate::cluster::discovery::Resource;
use crate::drift::{Change, ObjectReport, Offline};
use crate::fields::ManagedFields;
use crate::object::ObjectKey;
use crate::source::{self, Located};

/// What a caller that follows objects (watch) keeps of one once its verdict is made: enough to
/// tell a later change of the live object from bookkeeping, and where Git's side is read.
#[derive(Debug, Clone)]
pub struct Summary {
    pub resource_version: String,
    /// [`crate::object::content_digest`] of live as the server sent it.
    pub content: u64,
    pub repo_key: String,
    /// The checkout's path, or the URL.
    pub repo: String,
    pub local_checkout: bool,
    pub tracked_ref: Option<String>,
    pub tracked_commit: Option<String>,
    /// The commit desired was read at (the applied one, else the tip).
    pub read_at: String,
    /// Git declares the object at the tip.
    pub declared: bool,
    /// The other repositories desired was read from (the values repositories of an Argo CD Helm
    /// source), and their tips.
    pub values_tips: Vec<SummaryTip>,
    /// A chart repository's chart with a version range, and what the range picked.
    pub chart_poll: Option<(crate::render::chart_repo::ChartPoll, String)>,
}

/// A repository's tracked tip, as a follower polls it.
#[derive(Debug, Clone)]
pub struct SummaryTip {
    pub repo_key: String,
    /// The checkout's path, or the URL.
    pub repo: String,
    pub local_checkout: bool,
    pub tracked_ref: String,
    pub tracked_commit: String,
}

/// One live object on its way through the comparison; kept after the verdict so that `revert`
/// can write desired back and `watch` can compare the next version of the object.
pub struct Work {
    pub key: ObjectKey,
    pub resource: Resource,
    pub live: LiveObject,
    pub pointer: Option<source::Pointer>,
    pub located: Located,
    pub managed: ManagedFields,
    /// The reconciler's field managers (the first is the one to apply as).
    pub reconciler: Vec<String>,
    pub offline: Offline,
    /// Fields Git does not declare that only out-of-band managers own.
    pub extra: Vec<Change>,
    pub dry_run: Option<Result<Vec<Change>, String>>,
    /// The digest of live before managedFields was dropped, when summaries are wanted.
    pub(super) content: Option<u64>,
    /// Paths of desired's values that are encrypted in Git and could not be decrypted: not
    /// compared (desired holds live's values there).
    pub not_compared: Vec<String>,
}

impl Work {
    /// What a follower keeps of this work.
    pub fn summary(&self) -> Summary {
        let located = &self.located;
        Summary {
            resource_version: self.live["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            content: self
                .content
                .unwrap_or_else(|| crate::object::content_digest(&self.live)),
            repo_key: located.repo_key.clone(),
            repo: located.repo.clone(),
            local_checkout: located.local_checkout,
            tracked_ref: located.tracked_ref.clone(),
            tracked_commit: located.tracked_commit.clone(),
            read_at: located.read_at.clone(),
            declared: located.desired_at_tip.is_some(),
            values_tips: located
                .chart
                .iter()
                .flat_map(|c| &c.values_repos)
                .map(|v| SummaryTip {
                    repo_key: v.repo_key.clone(),
                    repo: v.repo.clone(),
                    local_checkout: v.local,
                    tracked_ref: v.tracked_ref.clone(),
                    tracked_commit: v.tracked_commit.clone(),
                })
                .collect(),
            chart_poll: located.chart_poll.clone(),
        }
    }

    /// Desired as the API takes it (in the live object's namespace), when Git still declares
    /// the object.
    pub fn desired(&self) -> Option<Value> {
        Some(self.desired_shared()?.into_owned())
    }

    /// [`Work::desired`], copied only when it needs the namespace filled in.
    pub(super) fn desired_shared(&self) -> Option<std::borrow::Cow<'_, Value>> {
        let at_tip = self.located.desired_at_tip.as_deref()?;
        let placed = !at_tip["metadata"]["namespace"].is_null()
            || self.live["metadata"]["namespace"].is_null();
        if placed {
            return Some(std::borrow::Cow::Borrowed(at_tip));
        }
        let mut desired = at_tip.clone();
        place(&mut desired, &self.live);
        Some(std::borrow::Cow::Owned(desired))
    }

    /// What `revert` writes back: desired, except for an object of a Helm release, which goes
    /// back to the release record's manifest (what helm-controller applied; no new release
    /// revision is made, and Git's pending changes wait for helm-controller).
    pub fn revert_target(&self) -> Option<Value> {
        if self.located.helm.is_none() {
            return self.desired();
        }
        self.located.desired_at_tip.as_ref()?;
        let mut applied = self.located.desired.as_ref().clone();
        if applied.is_null() {
            return None;
        }
        place(&mut applied, &self.live);
        Some(applied)
    }

    /// The field manager to apply desired as: the reconciler's own.
    pub fn manager(&self) -> String {
        self.reconciler
            .first()
            .cloned()
            .unwrap_or_else(|| "kubectl-gitops".into())
    }
}

/// One object's verdict, with what it was made from (none for objects that never got that far:
/// missing, no source, errors).
pub struct Evaluated {
    pub report: ObjectReport,
    /// Boxed: most objects keep none, and a run keeps an `Evaluated` for every object.
    pub work: Option<Box<Work>>,
    /// With [`Options::summaries`], for every object that was located; for a missing object,
    /// the summary of the object whose source declares it (whose tips it is read from).
    pub summary: Option<Summary>,
    /// For a missing object: what Git declares, for `revert` to create it again.
    pub missing: Option<MissingObject>,
}

/// An object Git declares and the cluster does not have, ready to be created again: desired
/// in the namespace it belongs in, carrying the source markers its siblings carry (so that it
/// is found again the way they are), and who would apply it.
pub struct MissingObject {
    pub desired: Value,
    /// The field manager the reconciler of its siblings applies as.
    pub manager: String,
    pub reconciler: Option<source::Reconciler>,
    /// Values from Secrets its source renders into it (a substituted variable, a HelmRelease's
    /// Secret values): hidden in what revert prints, as for a drifted object.
    pub secrets: Vec<String>,
}

/// A kind that was listed, and from which resourceVersion a watch can follow it.
#[derive(Debug, Clone)]
pub struct ListedKind {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub resource_version: String,
}

/// Everything one evaluation found.
pub struct Evaluation {
    pub items: Vec<Evaluated>,
    /// Some object or kind could not be evaluated (already said on stderr).
    pub failed: bool,
    pub kinds: Vec<ListedKind>,
}

impl Evaluation {
    /// The reports alone, for rendering.
    pub fn reports(&self) -> Vec<ObjectReport> {
        self.items.iter().map(|e| e.report.clone()).collect()
    }
}

/// Desired as the API would take it: in the live object's namespace, with its name.
pub fn place(desired: &mut Value, live: &Value) {
    set_namespace(desired, live["metadata"]["namespace"].as_str());
}

/// Sets `metadata.namespace` when the document does not say.
pub(super) fn set_namespace(object: &mut Value, namespace: Option<&str>) {
    if let Some(ns) = namespace
        && object["metadata"]["namespace"].is_null()
        && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), ns.into());
    }
}
