//! What a change does to the verdicts: a live object appeared, changed or went away, or a
//! tracked tip moved in Git. Each evaluates what it must again and emits an event only when a
//! verdict changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use super::session::Context;
use super::state::{Followed, RETRY_MOST_ROUNDS, Watch, resource_version, short, verdict_digest};
use crate::cluster::LiveObject;
use crate::drift::{ObjectReport, Status, Verdict};
use crate::engine::{Evaluated, Work};
use crate::env::unix_now;
use crate::object::ObjectKey;
use crate::report::{Cause, DriftEvent};
use crate::text::single_line;

/// Why an object is evaluated again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// Its live object changed (a change of its status or bookkeeping alone is not looked at).
    Live,
    /// A tip it was read from moved.
    Tip,
    /// It is in error, and tried again at a poll round: what it says is said only when its
    /// verdict changes (the same error is not repeated every round).
    Retry,
}

/// Objects in error of one kind tried again with a GET each, up to this many; more, and the
/// kind is listed once.
const RETRY_GETS: usize = 16;

impl Watch {
    /// A live object appeared or changed: evaluate it, and say so if its verdict changed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn on_live(
        &mut self,
        key: ObjectKey,
        kind: usize,
        live: LiveObject,
        added: bool,
        cause: Cause,
        trigger: Trigger,
        ctx: &mut Context<'_>,
    ) -> Result<Option<Work>> {
        let rv = resource_version(&live);
        let content = crate::object::content_digest(&live);
        let old = self.followed.get(&key).cloned();
        if let Some(f) = &old
            && f.present
            && trigger == Trigger::Live
            && (f.resource_version == rv || f.content == content)
        {
            // Status or bookkeeping only: nothing a verdict depends on.
            let f = self.followed.get_mut(&key).expect("just read");
            f.resource_version = rv;
            return Ok(None);
        }
        let resource = self.kinds[kind].resource.clone();
        let wanted = match &old {
            Some(f) if f.status != Status::NoSource => true,
            _ => self.filter.wants(&resource, &live),
        };
        if !wanted {
            // A new object that no rule maps to Git, made by hand rather than by a controller.
            if old.is_none()
                && added
                && live["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
            {
                self.follow_no_source(key, kind, rv, content, cause, ctx)?;
            } else if let Some(f) = self.followed.get_mut(&key) {
                f.resource_version = rv;
                f.content = content;
            }
            return Ok(None);
        }
        let timer = Instant::now();
        // A retry's errors and warnings are held, and said when its verdict changed.
        let mut held = Vec::new();
        let err: &mut dyn Write = match trigger {
            Trigger::Retry => &mut held,
            _ => &mut *ctx.err,
        };
        let evaluated = match ctx.engine.evaluate_one(&resource, live, ctx.log, err).await {
            Ok(e) => e,
            Err(e) => {
                let message = single_line(&format!("{e:#}"));
                writeln!(err, "error: {key}: {message}")?;
                Some(Evaluated {
                    report: ObjectReport {
                        object: key.clone(),
                        status: Status::Error,
                        verdict: None,
                        source: None,
                        fields: Vec::new(),
                        ignored: Vec::new(),
                        error: Some(message),
                        not_compared: Vec::new(),
                    },
                    work: None,
                    summary: None,
                    missing: None,
                })
            }
        };
        ctx.log.debug(ctx.err, 1, || {
            format!("{key}: evaluated in {} ms", timer.elapsed().as_millis())
        });
        let Some(mut evaluated) = evaluated else {
            ctx.err.write_all(&held)?;
            // No source: said once, when the object was followed before or is new.
            if old.is_some() || added {
                self.follow_no_source(key, kind, rv, content, cause, ctx)?;
            }
            return Ok(None);
        };
        if evaluated.report.status == Status::Error {
            // A reconciler lookup that failed (the server went away) must not stick.
            ctx.engine.reconcilers = Default::default();
        }
        let mut followed = self.followed_from(&evaluated, Some(kind));
        if followed.resource_version.is_empty() {
            followed.resource_version = rv;
            followed.content = content;
        }
        if let Some(f) = &old
            && followed.status == Status::Error
            && followed.tip.is_none()
        {
            // An error names no source: the tips it was read from before are still followed,
            // so a commit or chart version that mends it is seen.
            followed.tip = f.tip;
            followed.other_tips.clone_from(&f.other_tips);
            followed.declared = f.declared;
            followed.source = followed.source.or_else(|| f.source.clone());
        }
        if followed.status == Status::Error {
            // Tried again at the next round, then less often while the same tries fail.
            let failures = match &old {
                Some(f) if trigger == Trigger::Retry && f.status == Status::Error => f.retry.1 + 1,
                _ => 0,
            };
            let wait = (1u64 << failures.min(8)).min(RETRY_MOST_ROUNDS);
            followed.retry = (self.round + wait, failures);
        }
        // Tried again, and read at a commit (or chart version) newer than the poller has seen:
        // Git (or the chart) is what changed.
        let cause = match (trigger, &evaluated.summary) {
            (Trigger::Retry, Some(s)) => self.read_ahead(&followed, s).unwrap_or(cause),
            _ => cause,
        };
        let report = &evaluated.report;
        let changed = match &old {
            None => report.status != Status::InSync,
            Some(f) => f.status != followed.status || f.verdict != followed.verdict,
        };
        self.say_held(&held, changed, ctx)?;
        if changed {
            let event = DriftEvent::new(
                unix_now(),
                key.clone(),
                old.as_ref().map(|f| f.status),
                Some(report.status),
                cause,
                Some(report),
                Some(followed.resource_version.clone()),
            );
            ctx.emit(event)?;
        }
        self.followed.insert(key, followed);
        Ok(evaluated.work.take().map(|w| *w))
    }

    /// Followed, and not in error (any more).
    fn out_of_error(&self, key: &ObjectKey) -> bool {
        self.followed
            .get(key)
            .is_some_and(|f| f.status != Status::Error)
    }

    /// What a retry said: all of it when its verdict changed; else not its error (the same
    /// as before) nor a warning said before, so an error that lasts is not said every round.
    fn say_held(&mut self, held: &[u8], changed: bool, ctx: &mut Context<'_>) -> Result<()> {
        for line in String::from_utf8_lossy(held).lines() {
            let said_before = if line.starts_with("warning: ") {
                !self.said.insert(line.to_owned())
            } else {
                line.starts_with("error: ")
            };
            if changed || !said_before {
                writeln!(ctx.err, "{line}")?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn follow_no_source(
        &mut self,
        key: ObjectKey,
        kind: usize,
        rv: String,
        content: u64,
        cause: Cause,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let old = self.followed.get(&key).map(|f| f.status);
        let report = ObjectReport {
            object: key.clone(),
            status: Status::NoSource,
            verdict: None,
            source: None,
            fields: Vec::new(),
            ignored: Vec::new(),
            error: None,
            not_compared: Vec::new(),
        };
        if old != Some(Status::NoSource) {
            let rv_shown = (!rv.is_empty()).then(|| rv.clone());
            ctx.emit(DriftEvent::new(
                unix_now(),
                key.clone(),
                old,
                Some(Status::NoSource),
                cause,
                Some(&report),
                rv_shown,
            ))?;
        }
        self.followed.insert(
            key,
            Followed {
                status: Status::NoSource,
                verdict: verdict_digest(&report),
                present: true,
                resource_version: rv,
                content,
                kind: Some(kind),
                tip: None,
                other_tips: Vec::new(),
                declared: false,
                source: None,
                read_at: None,
                retry: (0, 0),
            },
        );
        Ok(())
    }

    /// A live object was deleted (or left the scope).
    pub(super) async fn on_deleted(
        &mut self,
        key: ObjectKey,
        cause: Cause,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let Some(old) = self.followed.get(&key).cloned() else {
            return Ok(());
        };
        if !old.present {
            return Ok(());
        }
        // With a label selector, an object whose labels stop matching looks deleted.
        if self.selector.is_some()
            && let Some(kind) = old.kind
        {
            let listed = &self.kinds[kind];
            if let Ok(Some(_)) = ctx
                .engine
                .cluster
                .get(&listed.resource, key.namespace.as_deref(), &key.name)
                .await
            {
                self.followed.remove(&key);
                return Ok(());
            }
        }
        if old.declared {
            let report = ObjectReport {
                object: key.clone(),
                status: Status::Missing,
                verdict: Some(Verdict::Offline),
                source: old.source.clone(),
                fields: Vec::new(),
                ignored: Vec::new(),
                error: None,
                not_compared: Vec::new(),
            };
            ctx.emit(DriftEvent::new(
                unix_now(),
                key.clone(),
                Some(old.status),
                Some(Status::Missing),
                cause,
                Some(&report),
                None,
            ))?;
            let f = self.followed.get_mut(&key).expect("just read");
            f.status = Status::Missing;
            f.verdict = verdict_digest(&report);
            f.present = false;
            f.resource_version.clear();
            f.content = 0;
        } else {
            self.followed.remove(&key);
            ctx.emit(DriftEvent::new(
                unix_now(),
                key,
                Some(old.status),
                None,
                cause,
                None,
                None,
            ))?;
        }
        Ok(())
    }

    /// A poll round: for each tip that moved, the objects read from it are evaluated again
    /// (listed afresh: watch keeps no live objects), and what Git now declares that the
    /// cluster lacks shows as missing. Objects in error are tried again when their
    /// [`Followed::retry`] round has come.
    pub(super) async fn on_round(
        &mut self,
        found: Vec<(usize, Result<String, String>)>,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let mut moved = BTreeMap::new();
        for (index, result) in found {
            let Some(tip) = self.tips.get_mut(index) else {
                continue;
            };
            match result {
                Ok(commit) => {
                    tip.last_error = None;
                    if commit != tip.commit {
                        moved.insert(index, commit);
                    }
                }
                Err(e) => {
                    if tip.last_error.as_deref() != Some(e.as_str()) {
                        writeln!(
                            ctx.err,
                            "warning: {}: cannot read {} ({e}); trying again at the next poll",
                            tip.location, tip.rev
                        )?;
                        tip.last_error = Some(e);
                    }
                }
            }
        }
        // Objects in error are tried again (what failed may have passed), at the next round
        // and then less often; not while their kind's watch cannot reach the server.
        self.round += 1;
        let errored: Vec<ObjectKey> = self
            .followed
            .iter()
            .filter(|(_, f)| {
                f.present
                    && f.status == Status::Error
                    && f.retry.0 <= self.round
                    && f.kind
                        .is_some_and(|k| !self.down.contains(&k) && !self.stopped.contains(&k))
            })
            .map(|(k, _)| k.clone())
            .collect();
        if moved.is_empty() && errored.is_empty() {
            return Ok(());
        }
        if !errored.is_empty() {
            ctx.log.debug(ctx.err, 1, || {
                format!("retry: {} objects in error, evaluated again", errored.len())
            });
        }
        if moved.is_empty() {
            // Nothing new in Git: what was read is kept, what failed is tried again.
            ctx.engine.locator.forget_failures();
            ctx.engine.reconcilers = Default::default();
        } else {
            self.tips_moved = true;
            for (index, commit) in &moved {
                let tip = &self.tips[*index];
                ctx.log.debug(ctx.err, 1, || match tip.chart {
                    Some(_) => format!(
                        "chart: {} {} picked {}, now {commit}",
                        tip.location, tip.rev, tip.commit
                    ),
                    None => format!(
                        "git: {} {} moved from {} to {commit}",
                        tip.location,
                        tip.rev,
                        short(&tip.commit)
                    ),
                });
            }
            ctx.engine.refresh_git(ctx.env);
        }

        // The objects read from the moved tips, by kind, and why: Git, unless only a chart
        // repository's pick moved.
        let mut by_kind: BTreeMap<usize, HashMap<ObjectKey, (Cause, Trigger)>> = BTreeMap::new();
        for (key, f) in &self.followed {
            let read_from_moved: Vec<usize> = f
                .tip
                .iter()
                .chain(&f.other_tips)
                .filter(|tip| moved.contains_key(tip))
                .copied()
                .collect();
            let cause = match read_from_moved
                .iter()
                .all(|t| self.tips[*t].chart.is_some())
            {
                true => Cause::Chart,
                false => Cause::Git,
            };
            if let (true, Some(kind), false) = (f.present, f.kind, read_from_moved.is_empty()) {
                by_kind
                    .entry(kind)
                    .or_default()
                    .insert(key.clone(), (cause, Trigger::Tip));
            }
        }
        // In error and read from no tip that moved: tried again, with a GET each when a kind
        // has few and is not listed anyway.
        let mut retried: BTreeMap<usize, Vec<ObjectKey>> = BTreeMap::new();
        for key in errored {
            let kind = self.followed[&key].kind.expect("only objects of a kind");
            if !by_kind
                .get(&kind)
                .is_some_and(|keys| keys.contains_key(&key))
            {
                retried.entry(kind).or_default().push(key);
            }
        }
        let mut got = Vec::new();
        for (kind, keys) in retried {
            if by_kind.contains_key(&kind) || keys.len() > RETRY_GETS {
                let listed = by_kind.entry(kind).or_default();
                listed.extend(
                    keys.into_iter()
                        .map(|k| (k, (Cause::Retry, Trigger::Retry))),
                );
            } else {
                got.extend(keys.into_iter().map(|k| (kind, k)));
            }
        }
        let mut present: BTreeSet<ObjectKey> = self
            .followed
            .iter()
            .filter(|(_, f)| f.present)
            .map(|(k, _)| k.clone())
            .collect();
        let mut works: Vec<Work> = Vec::new();
        let mut sources_seen = HashSet::new();
        for (kind, key) in got {
            let resource = self.kinds[kind].resource.clone();
            // Gone: its watch says so; the server away: the next round tries again.
            let Ok(Some(live)) = ctx
                .engine
                .cluster
                .get(&resource, key.namespace.as_deref(), &key.name)
                .await
            else {
                continue;
            };
            let work = self
                .on_live(
                    key.clone(),
                    kind,
                    live,
                    false,
                    Cause::Retry,
                    Trigger::Retry,
                    ctx,
                )
                .await?;
            // What it declares beside it is looked for once it is out of error.
            if let Some(work) = work
                && self.out_of_error(&key)
            {
                one_per_source(&mut works, &mut sources_seen, work);
            }
        }
        for (kind, keys) in by_kind {
            let listed = self.kinds[kind].clone();
            let objects = match ctx
                .engine
                .cluster
                .list(
                    &listed.resource,
                    listed.namespace.as_deref(),
                    self.selector.as_deref(),
                )
                .await
            {
                Ok(objects) => objects,
                Err(e) if keys.values().all(|(_, t)| *t == Trigger::Retry) => {
                    // Only objects in error: they are tried again later.
                    ctx.log.debug(ctx.err, 1, || {
                        format!(
                            "retry: cannot list {} ({})",
                            listed.resource.qualified_name(),
                            single_line(&e.to_string())
                        )
                    });
                    continue;
                }
                Err(e) => {
                    // The tips stay where they were: the next poll tries again.
                    writeln!(
                        ctx.err,
                        "warning: {}: cannot list it after Git moved ({}); trying again at the next poll",
                        listed.resource.qualified_name(),
                        single_line(&e.to_string())
                    )?;
                    return Ok(());
                }
            };
            for live in objects {
                let Some(key) = ObjectKey::of(&live) else {
                    continue;
                };
                present.insert(key.clone());
                let Some(&(cause, trigger)) = keys.get(&key) else {
                    continue;
                };
                let work = self
                    .on_live(key.clone(), kind, live, false, cause, trigger, ctx)
                    .await?;
                if let Some(work) = work
                    && (trigger == Trigger::Tip || self.out_of_error(&key))
                {
                    one_per_source(&mut works, &mut sources_seen, work);
                }
            }
        }
        for (index, commit) in &moved {
            self.tips[*index].commit = commit.clone();
        }

        // What Git declares now that the cluster does not have (a chart, when only charts'
        // picks moved; a retry, when nothing moved and an object in error was read at last).
        if moved.is_empty() && works.is_empty() {
            return Ok(());
        }
        let missing_cause = if moved.is_empty() {
            Cause::Retry
        } else if moved.keys().all(|t| self.tips[*t].chart.is_some()) {
            Cause::Chart
        } else {
            Cause::Git
        };
        let listed_kinds: BTreeSet<(String, String)> = self.kind_index.keys().cloned().collect();
        let covered: HashSet<String> = works.iter().map(|w| w.located.repo_key.clone()).collect();
        let candidates = ctx
            .engine
            .missing(&works, &present, &listed_kinds, ctx.err)
            .await?;
        let mut still_missing = HashSet::new();
        for (report, noted_by) in candidates {
            let key = report.object.clone();
            still_missing.insert(key.clone());
            if let Some(f) = self.followed.get_mut(&key) {
                if !f.present {
                    f.source = report.source.clone();
                }
                continue;
            }
            // An object without any source marker is not followed; ask before saying missing.
            let kind = self.kind_of(&key);
            if let Some(kind) = kind
                && let Ok(Some(_)) = ctx
                    .engine
                    .cluster
                    .get(
                        &self.kinds[kind].resource,
                        key.namespace.as_deref(),
                        &key.name,
                    )
                    .await
            {
                continue;
            }
            // Read from the tips of the object whose source declares it.
            let (tip, other_tips) = self.tips_of(&works[noted_by].summary());
            ctx.emit(DriftEvent::new(
                unix_now(),
                key.clone(),
                None,
                Some(Status::Missing),
                missing_cause,
                Some(&report),
                None,
            ))?;
            self.followed.insert(
                key,
                Followed {
                    status: Status::Missing,
                    verdict: verdict_digest(&report),
                    present: false,
                    resource_version: String::new(),
                    content: 0,
                    kind,
                    tip,
                    other_tips,
                    declared: true,
                    source: report.source.clone(),
                    read_at: None,
                    retry: (0, 0),
                },
            );
        }
        // Missing before, and no longer declared where Git (or the chart) was read again.
        let charts_read: HashSet<usize> = works
            .iter()
            .filter_map(|w| w.located.chart_poll.as_ref())
            .filter_map(|(poll, _)| {
                self.tips
                    .iter()
                    .position(|t| t.chart.as_ref() == Some(poll))
            })
            .collect();
        let dropped: Vec<ObjectKey> = self
            .followed
            .iter()
            .filter(|(k, f)| {
                let git_read = f.tip.is_some_and(|t| {
                    moved.contains_key(&t) && covered.contains(&self.tips[t].repo_key)
                });
                let chart_read = f
                    .other_tips
                    .iter()
                    .any(|t| moved.contains_key(t) && charts_read.contains(t));
                !f.present && (git_read || chart_read) && !still_missing.contains(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in dropped {
            self.followed.remove(&key);
            ctx.emit(DriftEvent::new(
                unix_now(),
                key,
                Some(Status::Missing),
                None,
                missing_cause,
                None,
                None,
            ))?;
        }
        Ok(())
    }
}

/// Keeps `work` when it is the first of its file or render root: one object of each is enough
/// to list its siblings.
fn one_per_source(works: &mut Vec<Work>, seen: &mut HashSet<(String, String, String)>, work: Work) {
    let source = (
        work.located.repo_key.clone(),
        work.located.file.clone(),
        work.located.render_root.clone(),
    );
    if seen.insert(source) {
        works.push(work);
    }
}
