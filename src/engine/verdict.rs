//! The verdict on one compared object, pure: its drifted fields attributed (pending, or out of
//! band and whose), ignore rules applied.

use super::Work;
use crate::drift::{
    self, Change, FieldReport, ObjectReport, Offline, SourceSummary, Status, Verdict, Why,
};
use crate::fields::FieldPath;
use crate::normalize::IgnoreRule;
use crate::object::ObjectKey;

pub(super) fn verdict(w: &Work, rules: &[IgnoreRule], repo_rules: &[IgnoreRule]) -> ObjectReport {
    let source = Some(SourceSummary {
        repo: w.located.repo.clone(),
        file: w.located.tip_place.0.clone(),
        lines: w.located.tip_place.1,
        // Desired is read at the tracked tip (or --against).
        commit: w
            .located
            .tracked_commit
            .clone()
            .unwrap_or_else(|| w.located.read_at.clone()),
        rule: w.located.rule.describe().to_owned(),
    });
    if w.located.desired_at_tip.is_none() {
        return ObjectReport {
            object: w.key.clone(),
            status: Status::Orphaned,
            verdict: Some(Verdict::Offline),
            source,
            fields: Vec::new(),
            ignored: Vec::new(),
            error: None,
            not_compared: Vec::new(),
        };
    }
    let (changes, verdict) = match (&w.dry_run, &w.offline) {
        (Some(Err(e)), _) => {
            return ObjectReport {
                object: w.key.clone(),
                status: Status::Error,
                verdict: None,
                source,
                fields: Vec::new(),
                ignored: Vec::new(),
                error: Some(crate::text::redact(
                    &format!("dry run failed: {e}"),
                    &w.located.secrets,
                )),
                not_compared: Vec::new(),
            };
        }
        (Some(Ok(changes)), _) => (changes.clone(), Verdict::DryRun),
        (None, Offline::Drifted(changes)) => (changes.clone(), Verdict::Offline),
        (None, Offline::InSync) => (Vec::new(), Verdict::Offline),
    };
    let mut fields = Vec::new();
    let mut ignored = Vec::new();
    for change in changes.iter().chain(w.extra.iter()) {
        let why = attribute(change, w);
        // A Secret's values, and any value holding one that a reconciler put into another
        // object (a substituted variable, a Helm value from a Secret).
        let secret = drift::is_secret_value(&w.key.group, &w.key.kind, &change.path)
            || drift::shows_secret(change.desired.as_ref(), &w.located.secrets)
            || drift::shows_secret(change.live.as_ref(), &w.located.secrets);
        let (git, live) = if secret {
            (
                drift::mask_secret(&change.desired, "git"),
                drift::mask_secret(&change.live, "live"),
            )
        } else {
            (change.desired.clone(), change.live.clone())
        };
        let pointer = change
            .path
            .to_json_pointer(&w.live)
            .or_else(|| {
                w.located
                    .desired_at_tip
                    .as_ref()
                    .and_then(|d| change.path.to_json_pointer(d))
            })
            .unwrap_or_default();
        let managers: Vec<&str> = w
            .managed
            .owners(&change.path)
            .iter()
            .map(|e| e.manager.as_str())
            .collect();
        let rule = rules
            .iter()
            .chain(repo_rules)
            .find(|r| r.matches(&w.key, &pointer, &managers));
        let field = FieldReport {
            path: drift::shown_path(&change.path, &w.located.secrets),
            git,
            live,
            why,
            ignored_by: rule.map(IgnoreRule::describe),
            may_be_server_default: change
                .unproven
                .iter()
                .map(|p| drift::shown_path(p, &w.located.secrets))
                .collect(),
        };
        if field.ignored_by.is_some() {
            ignored.push(field);
        } else if !fields.iter().any(|f: &FieldReport| f.path == field.path) {
            fields.push(field);
        }
    }
    ObjectReport {
        object: w.key.clone(),
        status: if fields.is_empty() {
            Status::InSync
        } else {
            Status::Drifted
        },
        verdict: Some(verdict),
        source,
        fields,
        ignored,
        error: None,
        not_compared: drift::not_compared(w.not_compared.clone()),
    }
}

/// Why one field drifted: Git changed it after the applied revision (pending), or a manager
/// other than the reconciler owns the live value (out of band), or nothing records it.
fn attribute(change: &Change, w: &Work) -> Why {
    // Desired as written: a list item's key the server fills in (a port's protocol) matches.
    let at_tip = w
        .located
        .desired_at_tip
        .as_ref()
        .and_then(|d| change.path.resolve(d));
    let applied = change.path.resolve(&w.located.desired);
    if at_tip != applied
        && let Some(c) = &w.located.pending_commit
    {
        return Why::Pending {
            commit: c.id.to_string(),
            author: c.author_name.clone(),
            time: c.time,
            subject: c.subject.clone(),
        };
    }
    if at_tip != applied
        && let Some(p) = &w.located.published_chart
    {
        return Why::Published {
            chart: p.chart.clone(),
            version: p.version.clone(),
            source: p.source.clone(),
            installed: p.installed.clone(),
        };
    }
    let is_reconciler = |e: &&crate::fields::ManagedEntry| {
        crate::normalize::applied_by_reconciler(&e.manager, &e.operation, &w.reconciler)
    };
    let mut owners: Vec<&crate::fields::ManagedEntry> = w
        .managed
        .owners(&change.path)
        .into_iter()
        .filter(|e| !is_reconciler(e))
        .collect();
    if owners.is_empty() {
        // A value removed or replaced as a whole: whoever owns something below it.
        owners = w
            .managed
            .entries
            .iter()
            .filter(|e| !is_reconciler(e))
            .filter(|e| {
                e.fields
                    .leaves()
                    .any(|p: &FieldPath| p.starts_with(&change.path))
            })
            .collect();
    }
    owners.sort_by(|a, b| b.time.cmp(&a.time));
    match owners.first() {
        Some(e) => Why::OutOfBand {
            manager: e.manager.clone(),
            operation: e.operation.clone(),
            time: e.time.clone(),
            subresource: e.subresource.clone(),
        },
        None => Why::Unrecorded,
    }
}

pub(super) fn bare(key: ObjectKey, status: Status, error: Option<String>) -> ObjectReport {
    ObjectReport {
        object: key,
        status,
        verdict: None,
        source: None,
        fields: Vec::new(),
        ignored: Vec::new(),
        error,
        not_compared: Vec::new(),
    }
}
