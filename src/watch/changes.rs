//! What a change does to the verdicts: a live object appeared, changed or went away, or a
//! tracked tip moved in Git. Each evaluates what it must again and emits an event only when a
//! verdict changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;

use super::session::Context;
use super::state::{Followed, Watch, resource_version, short, verdict_digest};
use crate::cluster::LiveObject;
use crate::drift::{ObjectReport, Status, Verdict};
use crate::engine::{Evaluated, Work};
use crate::env::unix_now;
use crate::object::ObjectKey;
use crate::report::{Cause, DriftEvent};
use crate::text::single_line;

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
        force: bool,
        ctx: &mut Context<'_>,
    ) -> Result<Option<Work>> {
        let rv = resource_version(&live);
        let content = crate::object::content_digest(&live);
        let old = self.followed.get(&key).cloned();
        if let Some(f) = &old
            && f.present
            && !force
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
        let evaluated = match ctx
            .engine
            .evaluate_one(&resource, live, ctx.log, ctx.err)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let message = single_line(&format!("{e:#}"));
                writeln!(ctx.err, "error: {key}: {message}")?;
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
        let report = &evaluated.report;
        let changed = match &old {
            None => report.status != Status::InSync,
            Some(f) => f.status != followed.status || f.verdict != followed.verdict,
        };
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

    /// The poller's answer: for each tip that moved, the objects read from it are evaluated
    /// again (listed afresh: watch keeps no live objects), and what Git now declares that the
    /// cluster lacks shows as missing.
    pub(super) async fn on_tips(
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
        if moved.is_empty() {
            return Ok(());
        }
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

        // The objects read from the moved tips, by kind, and why: Git, unless only a chart
        // repository's pick moved.
        let mut by_kind: BTreeMap<usize, HashMap<ObjectKey, Cause>> = BTreeMap::new();
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
                by_kind.entry(kind).or_default().insert(key.clone(), cause);
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
                let Some(&cause) = keys.get(&key) else {
                    continue;
                };
                if let Some(work) = self
                    .on_live(key, kind, live, false, cause, true, ctx)
                    .await?
                {
                    // One object per file or render root is enough to list its siblings.
                    let source = (
                        work.located.repo_key.clone(),
                        work.located.file.clone(),
                        work.located.render_root.clone(),
                    );
                    if sources_seen.insert(source) {
                        works.push(work);
                    }
                }
            }
        }
        for (index, commit) in &moved {
            self.tips[*index].commit = commit.clone();
        }

        // What Git declares now that the cluster does not have (a chart, when only charts'
        // picks moved).
        let missing_cause = match moved.keys().all(|t| self.tips[*t].chart.is_some()) {
            true => Cause::Chart,
            false => Cause::Git,
        };
        let listed_kinds: BTreeSet<(String, String)> = self.kind_index.keys().cloned().collect();
        let covered: HashSet<String> = works.iter().map(|w| w.located.repo_key.clone()).collect();
        let candidates = ctx
            .engine
            .missing(&works, &present, &listed_kinds, ctx.err)
            .await?;
        let mut still_missing = HashSet::new();
        for report in candidates {
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
            let tip = works
                .iter()
                .find(|w| Some(&w.located.repo) == report.source.as_ref().map(|s| &s.repo))
                .map(|w| w.located.repo_key.clone())
                .and_then(|repo_key| self.tips.iter().position(|t| t.repo_key == repo_key));
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
                    other_tips: Vec::new(),
                    declared: true,
                    source: report.source.clone(),
                    read_at: None,
                },
            );
        }
        // Missing before, and no longer declared where Git was read again.
        let dropped: Vec<ObjectKey> = self
            .followed
            .iter()
            .filter(|(k, f)| {
                !f.present
                    && f.tip.is_some_and(|t| {
                        moved.contains_key(&t) && covered.contains(&self.tips[t].repo_key)
                    })
                    && !still_missing.contains(*k)
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
                Cause::Git,
                None,
                None,
            ))?;
        }
        Ok(())
    }
}
