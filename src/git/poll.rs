//! Where a tracked branch is now: what `watch` polls for new commits.

use std::path::Path;

use super::{Repo, RepoUrl};
use crate::text::single_line;

/// What the Git poller looks at.
#[derive(Debug, Clone)]
pub struct PollTarget {
    pub index: usize,
    pub local: bool,
    pub location: String,
    pub rev: String,
}

/// The commit a tip is at now: HEAD of a local checkout, or the tracked ref of a cache clone
/// after a fetch.
pub fn tip_now(target: &PollTarget, cache_root: &Path) -> Result<String, String> {
    let text = |e: &dyn std::fmt::Display| single_line(&e.to_string());
    let repo = if target.local {
        Repo::open_local(Path::new(&target.location)).map_err(|e| text(&e))?
    } else {
        let url = RepoUrl::parse(&target.location).map_err(|e| text(&e))?;
        let (repo, _) = Repo::open_remote(&url, cache_root).map_err(|e| text(&e))?;
        repo.fetch().map_err(|e| text(&e))?;
        repo
    };
    let (commit, _) = repo.resolve(&target.rev).map_err(|e| text(&e))?;
    Ok(commit.to_string())
}
