//! One batch of messages: the changes of each object coalesced (its last change counts, and
//! created-then-changed is still new), the watches' and the poller's news said, then each
//! object evaluated once.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};

use super::Msg;
use super::changes::Trigger;
use super::session::Context;
use super::state::{Watch, created_at};
use crate::cluster::{LiveObject, WatchEvent};
use crate::object::ObjectKey;
use crate::report::Cause;

/// One object's latest change within a batch.
pub(super) enum Change {
    Live {
        kind: usize,
        live: LiveObject,
        added: bool,
        cause: Cause,
    },
    Deleted {
        cause: Cause,
    },
}

impl Watch {
    /// One batch of messages: changes first (the last of each object counts), then the rest.
    pub(super) async fn handle(&mut self, batch: Vec<Msg>, ctx: &mut Context<'_>) -> Result<()> {
        let mut order: Vec<ObjectKey> = Vec::new();
        let mut changes: HashMap<ObjectKey, Change> = HashMap::new();
        let mut note = |key: ObjectKey, mut change: Change| {
            // Created and then changed within the batch is still new.
            if let (Some(Change::Live { added: true, .. }), Change::Live { added, .. }) =
                (changes.get(&key), &mut change)
            {
                *added = true;
            }
            if changes.insert(key.clone(), change).is_none() {
                order.push(key);
            }
        };
        // The poller's rounds: the tips read (none, when no tip is tracked).
        let mut tips = None;
        for msg in batch {
            match msg {
                Msg::Event { kind, event } => {
                    // The watch starts at the LIST, which had every older object: ADDED is an
                    // object created since.
                    let (live, added) = match event {
                        WatchEvent::Added(o) => (o, true),
                        WatchEvent::Modified(o) => (o, false),
                        WatchEvent::Deleted(o) => {
                            if let Some(key) = ObjectKey::of(&o) {
                                note(
                                    key,
                                    Change::Deleted {
                                        cause: Cause::Cluster,
                                    },
                                );
                            }
                            continue;
                        }
                        WatchEvent::Bookmark(_) => continue,
                    };
                    if let Some(key) = ObjectKey::of(&live) {
                        note(
                            key,
                            Change::Live {
                                kind,
                                live,
                                added,
                                cause: Cause::Cluster,
                            },
                        );
                    }
                }
                Msg::Relisted { kind, objects } => {
                    let mut seen = HashSet::new();
                    for o in objects {
                        let Some(key) = ObjectKey::of(&o) else {
                            continue;
                        };
                        seen.insert(key.clone());
                        let added = created_at(&o).is_some_and(|t| t >= self.start_unix)
                            && !self.followed.contains_key(&key);
                        note(
                            key,
                            Change::Live {
                                kind,
                                live: o,
                                added,
                                cause: Cause::Relist,
                            },
                        );
                    }
                    let gone: Vec<ObjectKey> = self
                        .followed
                        .iter()
                        .filter(|(k, f)| f.kind == Some(kind) && f.present && !seen.contains(*k))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in gone {
                        note(
                            key,
                            Change::Deleted {
                                cause: Cause::Relist,
                            },
                        );
                    }
                    ctx.log.debug(ctx.err, 1, || {
                        format!(
                            "{}: listed again (410 Gone)",
                            self.kinds[kind].resource.qualified_name()
                        )
                    });
                }
                Msg::Down { kind, error } => {
                    ctx.log.debug(ctx.err, 1, || {
                        format!(
                            "{}: watch failed: {error}",
                            self.kinds[kind].resource.qualified_name()
                        )
                    });
                    if self.down.is_empty() {
                        writeln!(
                            ctx.err,
                            "warning: lost the API server ({error}); retrying with backoff, and \
                             the watches resume where they stopped"
                        )?;
                    }
                    self.down.insert(kind);
                }
                Msg::Up { kind } => {
                    if self.down.remove(&kind) && self.down.is_empty() {
                        writeln!(ctx.err, "watching again: the API server answers")?;
                    }
                }
                Msg::Stopped { kind, error } => {
                    let name = self.kinds[kind].resource.qualified_name();
                    self.stopped.insert(kind);
                    self.watching = self.watching.saturating_sub(1);
                    if self.watching == 0 {
                        bail!("no kind can be watched any more; the last, {name}: {error}");
                    }
                    writeln!(
                        ctx.err,
                        "warning: {name}: the watch stopped ({error}); its changes are no longer followed",
                    )?;
                }
                Msg::Tips(found) => tips.get_or_insert_with(Vec::new).extend(found),
                Msg::Debug(line) => ctx.log.debug(ctx.err, 1, || line),
                Msg::Hook(message) => writeln!(ctx.err, "warning: {message}")?,
            }
        }
        for key in order {
            let change = changes.remove(&key).expect("every key noted has a change");
            match change {
                Change::Live {
                    kind,
                    live,
                    added,
                    cause,
                } => {
                    self.on_live(key, kind, live, added, cause, Trigger::Live, ctx)
                        .await?;
                }
                Change::Deleted { cause } => self.on_deleted(key, cause, ctx).await?,
            }
        }
        if let Some(tips) = tips {
            self.on_round(tips, ctx).await?;
        }
        Ok(())
    }
}
