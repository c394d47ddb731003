//! The annotations that say where an object came from, as anyone with edit rights may write
//! them: ours (`kubectl-gitops.dev/repo`, `path`, `commit`, one per line of the input; a missing
//! line is a missing annotation), kustomize's origin, Argo CD's tracking id and Flux's revision
//! (each the whole input). Besides not panicking, errors are one line, and what is accepted
//! stays inside the repository and has the shape its type promises.
#![no_main]

use kubectl_gitops::git::RepoPath;
use kubectl_gitops::markers::{
    BadAnnotation, COMMIT, PATH, REPO, is_k8s_name, parse_flux_revision, parse_origin, parse_stamp,
    parse_tracking_id,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Annotation values are JSON strings: always UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    let mut lines = text.splitn(3, '\n');
    let (repo, path, commit) = (lines.next(), lines.next(), lines.next());
    let stamp = parse_stamp(|key| match key {
        REPO => repo.map(str::to_owned),
        PATH => path.map(str::to_owned),
        COMMIT => commit.map(str::to_owned),
        _ => None,
    });
    match stamp {
        Ok(Some(stamp)) => {
            inside_the_repository(stamp.path.as_str());
            if let Some(commit) = &stamp.commit {
                assert!(is_commit_id(commit), "{commit:?}");
            }
        }
        Ok(None) => {}
        Err(error) => one_line(&error),
    }

    match parse_origin(text) {
        Ok(origin) => {
            // The render resolves it against the kustomization's directory.
            let root = RepoPath::parse("overlays/prod").expect("a valid path");
            if let Ok(file) = root.join(&origin.path) {
                inside_the_repository(file.as_str());
            }
        }
        Err(error) => one_line(&error),
    }

    match parse_tracking_id(text) {
        Ok(id) => {
            assert!(is_k8s_name(&id.app), "{id:?}");
            assert!(is_k8s_name(&id.name), "{id:?}");
            assert!(!id.kind.is_empty(), "{id:?}");
            assert!(
                id.namespace.is_empty() || is_k8s_name(&id.namespace),
                "{id:?}"
            );
            if let Some(ns) = &id.app_namespace {
                assert!(is_k8s_name(ns), "{id:?}");
            }
        }
        Err(error) => one_line(&error),
    }

    match parse_flux_revision(text) {
        Ok(revision) => assert!(is_commit_id(&revision.commit), "{revision:?}"),
        Err(error) => one_line(&error),
    }
});

fn inside_the_repository(path: &str) {
    assert!(!path.starts_with('/'), "{path:?}");
    assert!(!path.contains(['\\', '\0']), "{path:?}");
    assert!(
        path.split('/').all(|c| !matches!(c, "" | "." | "..")) || path.is_empty(),
        "{path:?}"
    );
}

fn is_commit_id(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn one_line(error: &BadAnnotation) {
    let message = error.to_string();
    assert!(!message.contains(['\n', '\r']), "{message:?}");
}
