//! What a watch knows: the kinds it follows, each object's last verdict, the tracked tips.
//! Everything here is pure; the changes that update it are in `changes.rs`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::scope::ScopeFilter;
use crate::cluster::LiveObject;
use crate::drift::{ObjectReport, SourceSummary, Status, Why};
use crate::engine::{Evaluated, Evaluation, ListedKind, Summary};
use crate::git::poll::PollTarget;
use crate::object::ObjectKey;
use crate::render::chart_repo::ChartPoll;
use crate::report::{Cause, WatchCounts};

/// An object watch follows, and its verdict.
#[derive(Debug, Clone)]
pub(super) struct Followed {
    pub(super) status: Status,
    /// A digest of the verdict beyond the status: the drifted fields, their values and whose.
    pub(super) verdict: u64,
    /// In the cluster (false: missing).
    pub(super) present: bool,
    pub(super) resource_version: String,
    /// A digest of what in the live object can change a verdict.
    pub(super) content: u64,
    /// Index into the watched kinds.
    pub(super) kind: Option<usize>,
    /// Index into the tracked tips.
    pub(super) tip: Option<usize>,
    /// The other tips desired was read from: an Argo CD Helm source's values repositories,
    /// and the chart repository a version range picks its chart in.
    pub(super) other_tips: Vec<usize>,
    /// Git declares it at the tip: deleting it makes it missing.
    pub(super) declared: bool,
    pub(super) source: Option<SourceSummary>,
    /// The commit its desired state was read at.
    pub(super) read_at: Option<String>,
    /// In error: the poll round at which it is tried again, and how many tries failed in a row
    /// (each doubles the wait, up to [`RETRY_MOST_ROUNDS`]).
    pub(super) retry: (u64, u32),
}

/// The most poll rounds an object in error waits between tries.
pub(super) const RETRY_MOST_ROUNDS: u64 = 16;

/// A tracked branch (or a checkout's HEAD) of one repository, and the commit it was at.
#[derive(Debug, Clone)]
pub(super) struct Tip {
    pub(super) repo_key: String,
    pub(super) local: bool,
    /// The checkout's path, or the URL.
    pub(super) location: String,
    pub(super) rev: String,
    pub(super) commit: String,
    /// The last poll error said, to say each only once.
    pub(super) last_error: Option<String>,
    /// A chart repository's version range in place of a branch: `commit` is what it picks.
    pub(super) chart: Option<ChartPoll>,
}

/// What the poller reads for one tip.
#[derive(Debug, Clone)]
pub(super) enum Poll {
    Git(PollTarget),
    /// The tip's index, and the range whose pick is read.
    Chart(usize, ChartPoll),
}

/// The state of a watch: the kinds, the objects and their verdicts, the tips.
pub(super) struct Watch {
    pub(super) kinds: Vec<ListedKind>,
    pub(super) kind_index: HashMap<(String, String), usize>,
    pub(super) filter: ScopeFilter,
    pub(super) selector: Option<String>,
    pub(super) followed: HashMap<ObjectKey, Followed>,
    pub(super) tips: Vec<Tip>,
    pub(super) targets_changed: bool,
    /// A tip moved: what was read at older commits may be forgotten.
    pub(super) tips_moved: bool,
    /// Kinds whose watch cannot reach the server right now.
    pub(super) down: HashSet<usize>,
    /// Kinds whose watch gave up: their objects are not tried again.
    pub(super) stopped: HashSet<usize>,
    /// Poll rounds so far.
    pub(super) round: u64,
    /// The warnings retries said, for a retry to say only the new ones (its error is said
    /// when its verdict changes).
    pub(super) said: HashSet<String>,
    /// Kinds whose watch runs (or retries).
    pub(super) watching: usize,
    pub(super) start_unix: i64,
}

impl Watch {
    pub(super) fn new(filter: ScopeFilter, selector: Option<String>, start_unix: i64) -> Watch {
        Watch {
            kinds: Vec::new(),
            kind_index: HashMap::new(),
            filter,
            selector,
            followed: HashMap::new(),
            tips: Vec::new(),
            targets_changed: false,
            tips_moved: false,
            down: HashSet::new(),
            stopped: HashSet::new(),
            round: 0,
            said: HashSet::new(),
            watching: 0,
            start_unix,
        }
    }

    /// Takes over what the first evaluation found; the live objects themselves are dropped.
    pub(super) fn follow_evaluation(&mut self, evaluation: Evaluation) -> WatchCounts {
        for kind in evaluation.kinds {
            let id = (kind.resource.group.clone(), kind.resource.kind.clone());
            self.kind_index.insert(id, self.kinds.len());
            self.kinds.push(kind);
        }
        let mut missing = Vec::new();
        for item in evaluation.items {
            if item.report.status == Status::Missing {
                missing.push(item);
                continue;
            }
            let key = item.report.object.clone();
            let followed = self.followed_from(&item, None);
            self.followed.insert(key, followed);
        }
        for item in missing {
            // Read from the tips of the object whose source declares it.
            let (tip, other_tips) = match &item.summary {
                Some(s) => self.tips_of(s),
                None => (None, Vec::new()),
            };
            let report = item.report;
            let followed = Followed {
                status: Status::Missing,
                verdict: verdict_digest(&report),
                present: false,
                resource_version: String::new(),
                content: 0,
                kind: self.kind_of(&report.object),
                tip,
                other_tips,
                declared: true,
                source: report.source.clone(),
                read_at: None,
                retry: (0, 0),
            };
            self.followed.insert(report.object, followed);
        }
        self.counts()
    }

    pub(super) fn counts(&self) -> WatchCounts {
        let mut counts = WatchCounts::default();
        for (key, f) in &self.followed {
            counts.add(f.status, key.clone());
        }
        counts
    }

    pub(super) fn kind_of(&self, key: &ObjectKey) -> Option<usize> {
        self.kind_index
            .get(&(key.group.clone(), key.kind.clone()))
            .copied()
    }

    /// What to remember of an evaluated object.
    pub(super) fn followed_from(&mut self, item: &Evaluated, kind: Option<usize>) -> Followed {
        let report = &item.report;
        let (resource_version, content, (tip, other_tips), declared, read_at) = match &item.summary
        {
            Some(s) => (
                s.resource_version.clone(),
                s.content,
                self.tips_of(s),
                s.declared,
                Some(s.read_at.clone()),
            ),
            None => (String::new(), 0, (None, Vec::new()), false, None),
        };
        Followed {
            status: report.status,
            verdict: verdict_digest(report),
            present: report.status != Status::Missing,
            resource_version,
            content,
            kind: kind.or_else(|| self.kind_of(&report.object)),
            tip,
            other_tips,
            declared,
            source: report.source.clone(),
            read_at,
            retry: (0, 0),
        }
    }

    /// The commits what is followed was read at, and the tips: what Git reads must be kept.
    pub(super) fn commits_in_use(&self) -> HashSet<String> {
        let mut commits: HashSet<String> = self
            .tips
            .iter()
            .filter(|t| t.chart.is_none())
            .map(|t| t.commit.clone())
            .collect();
        commits.extend(self.followed.values().filter_map(|f| f.read_at.clone()));
        commits
    }

    /// The tips an object's desired state was read from, added when new: its Git tip (none
    /// when nothing was read from Git: an Argo CD chart from a chart repository with no `ref`
    /// source), and the others (an Argo CD Helm source's values repositories, the chart
    /// repository a version range picks its chart in).
    pub(super) fn tips_of(&mut self, summary: &Summary) -> (Option<usize>, Vec<usize>) {
        let mut other_tips: Vec<usize> = summary
            .values_tips
            .iter()
            .map(|t| {
                self.tip_at(
                    (&t.repo_key, &t.repo, t.local_checkout),
                    Some(&t.tracked_ref),
                    &t.tracked_commit,
                )
            })
            .collect();
        if let Some((poll, picked)) = &summary.chart_poll {
            other_tips.push(self.chart_tip(poll, picked));
        }
        let tip = summary
            .tracked_commit
            .is_some()
            .then(|| self.tip_of(summary));
        (tip, other_tips)
    }

    /// Whether `followed` (as `summary` says) was read past what its tips were at: a
    /// commit ([`Cause::Git`]) or a chart version ([`Cause::Chart`]) the poller has not seen.
    pub(super) fn read_ahead(&self, followed: &Followed, summary: &Summary) -> Option<Cause> {
        if let (Some(t), Some(commit)) = (followed.tip, &summary.tracked_commit)
            && self.tips[t].commit != *commit
        {
            return Some(Cause::Git);
        }
        let (_, picked) = summary.chart_poll.as_ref()?;
        followed
            .other_tips
            .iter()
            .any(|&t| self.tips[t].chart.is_some() && self.tips[t].commit != *picked)
            .then_some(Cause::Chart)
    }

    /// The tip an object's desired state was read at, added when new.
    pub(super) fn tip_of(&mut self, summary: &Summary) -> usize {
        self.tip_at(
            (&summary.repo_key, &summary.repo, summary.local_checkout),
            summary.tracked_ref.as_deref(),
            summary.tracked_commit.as_deref().unwrap_or_default(),
        )
    }

    /// The tip of `tracked` (HEAD without one, or in a checkout) of a repository (its key,
    /// location, and whether it is a checkout), at `commit`, added when new.
    pub(super) fn tip_at(
        &mut self,
        (repo_key, location, local): (&str, &str, bool),
        tracked: Option<&str>,
        commit: &str,
    ) -> usize {
        let rev = match tracked {
            Some(rev) if !local => rev.to_owned(),
            _ => "HEAD".to_owned(),
        };
        if let Some(i) = self
            .tips
            .iter()
            .position(|t| t.chart.is_none() && t.repo_key == repo_key && t.rev == rev)
        {
            return i;
        }
        self.add_tip(Tip {
            repo_key: repo_key.to_owned(),
            local,
            location: location.to_owned(),
            rev,
            commit: commit.to_owned(),
            last_error: None,
            chart: None,
        })
    }

    /// The tip of a chart repository's version range, at what it `picked`, added when new.
    pub(super) fn chart_tip(&mut self, poll: &ChartPoll, picked: &str) -> usize {
        if let Some(i) = self
            .tips
            .iter()
            .position(|t| t.chart.as_ref() == Some(poll))
        {
            return i;
        }
        self.add_tip(Tip {
            repo_key: String::new(),
            local: false,
            location: format!("chart {} from {}", poll.chart, poll.url),
            rev: poll.constraint.clone(),
            commit: picked.to_owned(),
            last_error: None,
            chart: Some(poll.clone()),
        })
    }

    fn add_tip(&mut self, tip: Tip) -> usize {
        self.tips.push(tip);
        self.targets_changed = true;
        self.tips.len() - 1
    }

    pub(super) fn poll_targets(&self) -> Vec<Poll> {
        self.tips
            .iter()
            .enumerate()
            .map(|(index, t)| match &t.chart {
                Some(chart) => Poll::Chart(index, chart.clone()),
                None => Poll::Git(PollTarget {
                    index,
                    local: t.local,
                    location: t.location.clone(),
                    rev: t.rev.clone(),
                }),
            })
            .collect()
    }
}

pub(super) fn resource_version(object: &LiveObject) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `metadata.creationTimestamp` as Unix seconds.
pub(super) fn created_at(object: &LiveObject) -> Option<i64> {
    crate::report::time::parse_rfc3339(object["metadata"]["creationTimestamp"].as_str()?)
}

/// A digest of a verdict beyond its status: which fields drifted, to what, and whose change
/// (not when: a manager touching another field must not re-announce the same drift).
pub(super) fn verdict_digest(report: &ObjectReport) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    report.status.as_str().hash(&mut hasher);
    report.error.hash(&mut hasher);
    for f in &report.fields {
        f.path.hash(&mut hasher);
        for v in [&f.git, &f.live] {
            match v {
                Some(v) => crate::object::hash_value(v, &mut hasher),
                None => 9u8.hash(&mut hasher),
            }
        }
        match &f.why {
            Why::Pending { commit, .. } => ("pending", commit).hash(&mut hasher),
            Why::Published { chart, version, .. } => {
                ("published", chart, version).hash(&mut hasher)
            }
            Why::OutOfBand {
                manager,
                operation,
                subresource,
                ..
            } => ("out-of-band", manager, operation, subresource).hash(&mut hasher),
            Why::Unrecorded => "unrecorded".hash(&mut hasher),
        }
    }
    hasher.finish()
}

pub(super) fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::FieldReport;
    use serde_json::json;

    fn report(status: Status, fields: Vec<FieldReport>) -> ObjectReport {
        ObjectReport {
            object: ObjectKey {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: Some("ns".into()),
                name: "c".into(),
            },
            status,
            verdict: None,
            source: None,
            fields,
            ignored: Vec::new(),
            error: None,
            not_compared: Vec::new(),
        }
    }

    fn field(live: &str, manager: &str, time: &str) -> FieldReport {
        FieldReport {
            path: ".data.key".into(),
            git: Some(json!("value")),
            live: Some(json!(live)),
            why: Why::OutOfBand {
                manager: manager.into(),
                operation: "Update".into(),
                time: Some(time.into()),
                subresource: None,
            },
            ignored_by: None,
            may_be_server_default: Vec::new(),
        }
    }

    #[test]
    fn a_verdict_changes_with_fields_values_and_managers_not_with_times() {
        let base = verdict_digest(&report(
            Status::Drifted,
            vec![field("x", "kubectl-patch", "2026-01-01T00:00:00Z")],
        ));
        let later = verdict_digest(&report(
            Status::Drifted,
            vec![field("x", "kubectl-patch", "2026-01-02T00:00:00Z")],
        ));
        assert_eq!(base, later, "the same drift, touched again later");
        let other_value = verdict_digest(&report(
            Status::Drifted,
            vec![field("y", "kubectl-patch", "2026-01-01T00:00:00Z")],
        ));
        assert_ne!(base, other_value);
        let other_manager = verdict_digest(&report(
            Status::Drifted,
            vec![field("x", "kubectl-edit", "2026-01-01T00:00:00Z")],
        ));
        assert_ne!(base, other_manager);
        assert_ne!(
            verdict_digest(&report(Status::InSync, vec![])),
            verdict_digest(&report(Status::Missing, vec![]))
        );
    }
}
