//! Watch: `diff` that never stops. One evaluation, then one watch per kind in scope from its
//! LIST's resourceVersion; each change of a live object is evaluated on its own and printed only
//! when its verdict changes. Git is polled for new commits on the tracked branches, which show
//! as pending; objects in error are tried again at the polls, less often while they fail.

mod batch;
mod changes;
mod scope;
mod session;
mod state;

use crate::cluster::{LiveObject, WatchEvent, watcher};

pub use session::{Settings, follow};

/// From a watch task, the Git poller or the `--exec` worker to the main loop.
enum Msg {
    /// A change of an object of kind `kind` (an index into the watched kinds).
    Event { kind: usize, event: WatchEvent },
    /// The watch lost its place (410 Gone) and listed the kind again.
    Relisted {
        kind: usize,
        objects: Vec<LiveObject>,
    },
    /// The watch cannot reach the server; it retries with backoff.
    Down { kind: usize, error: String },
    /// It reaches the server again.
    Up { kind: usize },
    /// The watch of this kind gave up (forbidden, or the kind is gone).
    Stopped { kind: usize, error: String },
    /// A poll round: the tracked tips, as it found them (objects in error are tried again at
    /// the rounds, so a round with no tips is sent too).
    Tips(Vec<(usize, Result<String, String>)>),
    /// A line for `-v`.
    Debug(String),
    /// An `--exec` run failed.
    Hook(String),
}

impl Msg {
    /// What the watch of kind `kind` (an index into the watched kinds) tells.
    fn of_kind(kind: usize, event: watcher::Event) -> Msg {
        match event {
            watcher::Event::Changed(event) => Msg::Event { kind, event },
            watcher::Event::Relisted(objects) => Msg::Relisted { kind, objects },
            watcher::Event::Down(error) => Msg::Down { kind, error },
            watcher::Event::Up => Msg::Up { kind },
            watcher::Event::Stopped(error) => Msg::Stopped { kind, error },
            watcher::Event::Debug(line) => Msg::Debug(line),
        }
    }
}
