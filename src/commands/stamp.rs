//! `kubectl gitops stamp PATH`: renders PATH from the committed tree and prints every document
//! with our three annotations, ready for `kubectl apply -f -`. Reads only Git; no cluster.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::Outcome;
use crate::cli::StampArgs;
use crate::env::Env;
use crate::git::{Repo, RepoPath};
use crate::markers::{COMMIT, PATH, REPO};
use crate::render;
use crate::report::Log;

pub fn run(
    args: &StampArgs,
    env: &Env,
    log: &Log,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome> {
    let cwd = env.cwd.clone().unwrap_or_else(|| PathBuf::from("."));
    let target = crate::env::absolute(&cwd, &args.path);
    let repo_dir = args
        .repo
        .as_ref()
        .map(|r| crate::env::absolute(&cwd, r))
        .unwrap_or_else(|| {
            if target.is_dir() {
                target.clone()
            } else {
                target
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| cwd.clone())
            }
        });
    let repo = Repo::open_local(&repo_dir)?;
    let workdir = repo
        .workdir()
        .context("stamp needs a checkout with a working tree, not a bare repository")?
        .to_path_buf();
    let relative = crate::env::relative_to(&workdir, &target).with_context(|| {
        format!(
            "{} is not inside the repository at {}",
            args.path.display(),
            workdir.display()
        )
    })?;
    let path = if relative.is_empty() {
        RepoPath::root()
    } else {
        RepoPath::parse(&relative)?
    };

    if !args.allow_dirty {
        let dirty = repo.dirty_files(&path)?;
        if !dirty.is_empty() {
            let shown: Vec<&str> = dirty.iter().take(5).map(String::as_str).collect();
            let more = if dirty.len() > 5 {
                format!(" and {} more", dirty.len() - 5)
            } else {
                String::new()
            };
            bail!(
                "{} has uncommitted changes ({}{more}); commit them, or pass --allow-dirty to stamp \
                 the committed tree anyway",
                args.path.display(),
                shown.join(", ")
            );
        }
    }
    let rev = args.rev.as_deref().unwrap_or("HEAD");
    let (commit, _) = repo.resolve(rev)?;
    let repo_url = repo
        .remote_urls()
        .first()
        .cloned()
        .unwrap_or_else(|| format!("file://{}", workdir.display()));
    log.debug(err, 1, || {
        format!(
            "stamp {} at {} as {repo_url}",
            display(&path),
            commit.short()
        )
    });

    let docs = render::render_path(&repo, commit, &path)?;
    let mut last_change = std::collections::HashMap::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        let file = RepoPath::parse(&doc.file)?;
        let changed = match last_change.get(doc.file.as_str()) {
            Some(c) => *c,
            None => {
                let c = repo
                    .last_commit_touching(commit, &file)?
                    .with_context(|| format!("{} has no commit that added it", doc.file))?;
                last_change.insert(doc.file.clone(), c);
                c
            }
        };
        annotate(
            &mut doc.object,
            &repo_url,
            file.as_str(),
            &changed.to_string(),
        );
        if i > 0 {
            writeln!(out, "---")?;
        }
        let text = serde_saphyr::to_string(&doc.object).context("writing YAML")?;
        out.write_all(text.as_bytes())?;
    }
    Ok(Outcome::Clean)
}

fn annotate(object: &mut Value, repo: &str, path: &str, commit: &str) {
    let metadata = object.as_object_mut().map(|o| {
        o.entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()))
    });
    let Some(Value::Object(metadata)) = metadata else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(map) = annotations {
        map.insert(REPO.into(), repo.into());
        map.insert(PATH.into(), path.into());
        map.insert(COMMIT.into(), commit.into());
    }
}

fn display(path: &RepoPath) -> &str {
    if path.as_str().is_empty() {
        "."
    } else {
        path.as_str()
    }
}
