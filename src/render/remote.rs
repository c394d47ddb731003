//! What a kustomization may refer to before `kubectl kustomize` runs over an export: only what
//! is inside the exported tree. A remote base would make kustomize clone or download (up to a
//! minute against a host that does not answer, and a render that no longer reads the commit
//! alone); a path out of the export would read the machine's own files. Both are refused here,
//! offline, with the file and entry named.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::KUSTOMIZATION_FILES;

/// Fields whose entries name files or directories (or, for kustomize, URLs).
const ENTRY_FIELDS: [&str; 6] = [
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Checks the kustomization in `dir` and every local kustomization it refers to, below
/// `export` (the root of the exported tree). The error names the entry and the file it is in,
/// relative to the export.
pub(super) fn check(export: &Path, dir: &Path) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let Some(file) = KUSTOMIZATION_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        else {
            continue;
        };
        // Unreadable text is kustomize's to report; only what it would fetch is ours.
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(kustomization) = serde_saphyr::from_str::<Value>(&text) else {
            continue;
        };
        let shown = file
            .strip_prefix(export)
            .unwrap_or(&file)
            .display()
            .to_string();
        for field in ENTRY_FIELDS {
            for entry in kustomization[field].as_array().into_iter().flatten() {
                let Some(entry) = entry.as_str() else {
                    continue;
                };
                let local = normalise(&dir.join(entry));
                if local.starts_with(export) && local.exists() {
                    if local.is_dir() {
                        todo.push(local);
                    }
                    continue;
                }
                if is_remote(entry) {
                    return Err(format!(
                        "{shown} refers to the remote base '{}' ({field}); remote bases are not \
                         fetched, since the render reads the commit alone: vendor the base into \
                         the repository",
                        entry.escape_debug()
                    ));
                }
                if !local.starts_with(export) {
                    return Err(format!(
                        "{shown} refers to '{}' ({field}), outside the repository",
                        entry.escape_debug()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every local file or directory a kustomization names (relative to its own directory): its
/// resources, bases and components, patch files, generator inputs (`files`, `envs`), CRD and
/// configuration files, replacements and the OpenAPI schema. Remote bases and inline patches
/// are left out. What an export must hold for the build to read what it reads.
pub(super) fn local_references(kustomization: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |entry: &str| {
        // An inline patch or plugin configuration is YAML, not a path.
        if !entry.is_empty() && !entry.contains('\n') && !is_remote(entry) {
            out.push(entry.to_owned());
        }
    };
    for field in ENTRY_FIELDS
        .iter()
        .chain(&["crds", "configurations", "patchesStrategicMerge"])
    {
        for entry in kustomization[field].as_array().into_iter().flatten() {
            if let Some(entry) = entry.as_str() {
                add(entry);
            }
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        for entry in kustomization[field].as_array().into_iter().flatten() {
            if let Some(path) = entry["path"].as_str() {
                add(path);
            }
        }
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        for generator in kustomization[field].as_array().into_iter().flatten() {
            let files = generator["files"].as_array().into_iter().flatten();
            let envs = generator["envs"].as_array().into_iter().flatten();
            for entry in files.chain(envs).chain(std::iter::once(&generator["env"])) {
                // `files` entries may be `key=path`.
                if let Some(entry) = entry.as_str() {
                    add(entry.split_once('=').map_or(entry, |(_, path)| path));
                }
            }
        }
    }
    if let Some(path) = kustomization["openapi"]["path"].as_str() {
        add(path);
    }
    out
}

/// Whether kustomize would fetch `entry` instead of reading a file: a URL (any scheme), an
/// scp-like `user@host:path`, `gh:` and `git@` forms, or `host.tld/org/repo...` with a query
/// such as `?ref=`, as kustomize's remote syntax allows.
fn is_remote(entry: &str) -> bool {
    if entry.contains("://") || entry.starts_with("git@") || entry.starts_with("gh:") {
        return true;
    }
    if let Some((before, _)) = entry.split_once(':')
        && before.contains('@')
        && !before.contains('/')
    {
        return true;
    }
    let mut parts = entry.split('/');
    let host = parts.next().unwrap_or_default();
    let looks_like_host = host.contains('.') && host != "." && host != ".." && parts.count() >= 2;
    looks_like_host || entry.contains("?ref=") || entry.contains("?version=")
}

/// `path` with `.` and `..` applied lexically (kustomize does the same before reading).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_forms_are_recognised() {
        for remote in [
            "https://github.com/acme/base//deploy?ref=v1",
            "http://example.com/manifest.yaml",
            "file:///etc/kubernetes",
            "ssh://git@github.com/acme/base.git",
            "git@github.com:acme/base.git//deploy",
            "git::https://github.com/acme/base",
            "gh:acme/base",
            "github.com/acme/base/deploy?ref=v1",
            "example.com/acme/base",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in [
            "base",
            "../base",
            "./deploy.yaml",
            "deploy.yaml",
            "v1.2/base",
        ] {
            assert!(!is_remote(local), "{local}");
        }
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        dir
    }

    #[test]
    fn local_references_are_every_path_a_build_reads() {
        let kustomization: Value = serde_saphyr::from_str(
            "resources: [../base, web.yaml, https://github.com/acme/x//y?ref=v1]\n\
             components: [../components/tls]\n\
             patches:\n- path: patches/replicas.yaml\n- patch: |\n    kind: Deployment\n\
             patchesStrategicMerge: [legacy.yaml]\n\
             configMapGenerator:\n- name: c\n  files: [app.conf, key=../shared/k.txt]\n  envs: [c.env]\n\
             secretGenerator:\n- name: s\n  env: s.env\n\
             crds: [crds/gadget.yaml]\n\
             replacements:\n- path: replacements.yaml\n\
             openapi: {path: schema.json}\n",
        )
        .unwrap();
        let mut got = local_references(&kustomization);
        got.sort();
        let mut want = [
            "../base",
            "web.yaml",
            "../components/tls",
            "patches/replicas.yaml",
            "legacy.yaml",
            "app.conf",
            "../shared/k.txt",
            "c.env",
            "s.env",
            "crds/gadget.yaml",
            "replacements.yaml",
            "schema.json",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn local_bases_pass_and_remote_or_outside_ones_are_named() {
        let export = tree(&[
            ("app/kustomization.yaml", "resources: [../base, web.yaml]\n"),
            ("app/web.yaml", "kind: ConfigMap\n"),
            (
                "base/kustomization.yaml",
                "resources:\n- https://github.com/acme/base//deploy?ref=v1\n",
            ),
            ("ok/kustomization.yaml", "resources: [../app/web.yaml]\n"),
            ("out/kustomization.yaml", "resources: [../../../../etc]\n"),
            ("abs/kustomization.yaml", "components: [/etc/kubernetes]\n"),
        ]);
        let root = export.path();
        assert_eq!(check(root, &root.join("ok")), Ok(()));
        let err = check(root, &root.join("app")).unwrap_err();
        assert!(
            err.starts_with(
                "base/kustomization.yaml refers to the remote base \
                 'https://github.com/acme/base//deploy?ref=v1' (resources)"
            ),
            "{err}"
        );
        let err = check(root, &root.join("out")).unwrap_err();
        assert_eq!(
            err,
            "out/kustomization.yaml refers to '../../../../etc' (resources), outside the repository"
        );
        let err = check(root, &root.join("abs")).unwrap_err();
        assert!(
            err.contains("'/etc/kubernetes' (components), outside"),
            "{err}"
        );
    }
}
