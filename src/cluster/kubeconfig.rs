//! Which kubeconfig, context, cluster, user and namespace, resolved the way kubectl resolves them.
//!
//! Files: `--kubeconfig`, else every existing file of `$KUBECONFIG` merged (the first file to set
//! a name or `current-context` wins), else `~/.kube/config`. Then `--context`, `--cluster` and
//! `--user` override, and the namespace is `-n`, else the context's, else `default`.

use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;
use serde::Serialize;

use super::error::ClusterError;
use crate::env::Env;

/// Where the kubeconfig files came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeconfigOrigin {
    /// `--kubeconfig`.
    Flag,
    /// `$KUBECONFIG`.
    Env,
    /// `~/.kube/config`.
    Default,
}

/// The kubeconfig files to read, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigFiles {
    pub paths: Vec<PathBuf>,
    pub origin: KubeconfigOrigin,
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub namespace: Option<String>,
}

/// Where the namespace came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceOrigin {
    Flag,
    Context,
    Default,
    /// The pod's service account namespace (in-cluster config).
    Pod,
}

/// The names chosen in a kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub context: String,
    pub cluster: String,
    /// None when the context names no user (kubectl then sends no credentials).
    pub user: Option<String>,
    pub namespace: String,
    pub namespace_origin: NamespaceOrigin,
    pub server: String,
}

/// Decides which files to read. Missing entries of `$KUBECONFIG` are skipped, as kubectl does;
/// a missing `--kubeconfig` is an error. Ok with no paths means "no kubeconfig anywhere".
pub fn kubeconfig_files(flag: Option<&Path>, env: &Env) -> Result<KubeconfigFiles, ClusterError> {
    if let Some(path) = flag {
        if !path.exists() {
            return Err(ClusterError::KubeconfigMissing {
                path: path.to_path_buf(),
                flag: "--kubeconfig",
            });
        }
        return Ok(KubeconfigFiles {
            paths: vec![path.to_path_buf()],
            origin: KubeconfigOrigin::Flag,
        });
    }
    if let Some(list) = &env.kubeconfig {
        let listed: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let existing: Vec<PathBuf> = listed.iter().filter(|p| p.exists()).cloned().collect();
        if existing.is_empty() && !listed.is_empty() {
            return Err(ClusterError::NoKubeconfig {
                searched: format!("KUBECONFIG={}", display_paths(&listed)),
            });
        }
        if !existing.is_empty() {
            return Ok(KubeconfigFiles {
                paths: existing,
                origin: KubeconfigOrigin::Env,
            });
        }
    }
    let paths = env
        .home
        .as_ref()
        .map(|home| home.join(".kube").join("config"))
        .filter(|p| p.exists())
        .into_iter()
        .collect();
    Ok(KubeconfigFiles {
        paths,
        origin: KubeconfigOrigin::Default,
    })
}

/// Reads and merges the files, first one winning for every name and for `current-context`.
pub fn load(files: &KubeconfigFiles) -> Result<Kubeconfig, ClusterError> {
    let mut merged = Kubeconfig::default();
    for path in &files.paths {
        let mut next = read_one(path)?;
        // kubectl treats an empty current-context as unset, so a later file may set it.
        if next.current_context.as_deref() == Some("") {
            next.current_context = None;
        }
        merged = merged
            .merge(next)
            .map_err(|e| ClusterError::KubeconfigMalformed {
                path: path.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(merged)
}

fn read_one(path: &Path) -> Result<Kubeconfig, ClusterError> {
    // Read it ourselves first so that I/O errors and parse errors say which they are.
    let text = std::fs::read(path).map_err(|e| ClusterError::KubeconfigUnreadable {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })?;
    if std::str::from_utf8(&text).is_err() {
        return Err(ClusterError::KubeconfigMalformed {
            path: path.to_path_buf(),
            reason: "not UTF-8 text".into(),
        });
    }
    Kubeconfig::read_from(path).map_err(|e| ClusterError::KubeconfigMalformed {
        path: path.to_path_buf(),
        reason: crate::text::single_line(&match &e {
            kube::config::KubeconfigError::Parse(inner) => inner.to_string(),
            other => other.to_string(),
        }),
    })
}

/// Chooses context, cluster, user, namespace and server. Pure: names are checked here so that
/// a wrong one is answered with the names that do exist.
pub fn select(
    config: &Kubeconfig,
    files: &KubeconfigFiles,
    selectors: &Selectors,
) -> Result<Selection, ClusterError> {
    let contexts: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
    let context_name = match selectors
        .context
        .as_deref()
        .or(config.current_context.as_deref())
    {
        Some(name) => name,
        None => {
            return Err(ClusterError::NoCurrentContext {
                files: display_paths(&files.paths),
                available: list_or_none(&contexts),
            });
        }
    };
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| ClusterError::UnknownContext {
            name: context_name.to_owned(),
            available: list_or_none(&contexts),
        })?;

    let (cluster_name, cluster_named_by) = match &selectors.cluster {
        Some(name) => (name.as_str(), "--cluster".to_owned()),
        None => (
            context.cluster.as_str(),
            format!("context '{context_name}'"),
        ),
    };
    let clusters: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| ClusterError::UnknownCluster {
            name: cluster_name.to_owned(),
            named_by: cluster_named_by,
            available: list_or_none(&clusters),
        })?;
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ClusterError::NoServer {
            cluster: cluster_name.to_owned(),
        })?;

    let user = match &selectors.user {
        Some(name) => Some((name.as_str(), "--user".to_owned())),
        None => context
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|u| (u, format!("context '{context_name}'"))),
    };
    if let Some((name, named_by)) = &user {
        let users: Vec<&str> = config.auth_infos.iter().map(|u| u.name.as_str()).collect();
        // kubectl tolerates a context's user that is not defined (no credentials); an explicit
        // --user that does not exist is a mistake worth stopping for.
        if selectors.user.is_some() && !users.contains(name) {
            return Err(ClusterError::UnknownUser {
                name: (*name).to_owned(),
                named_by: named_by.clone(),
                available: list_or_none(&users),
            });
        }
    }

    let (namespace, namespace_origin) = match (&selectors.namespace, &context.namespace) {
        (Some(ns), _) => (ns.clone(), NamespaceOrigin::Flag),
        (None, Some(ns)) if !ns.is_empty() => (ns.clone(), NamespaceOrigin::Context),
        _ => ("default".to_owned(), NamespaceOrigin::Default),
    };
    Ok(Selection {
        context: context_name.to_owned(),
        cluster: cluster_name.to_owned(),
        user: user.map(|(name, _)| name.to_owned()),
        namespace,
        namespace_origin,
        server,
    })
}

/// The contexts a fleet run takes: those `named` (each checked), else every context of the
/// kubeconfig whose name matches `glob` (all of them without one), in the order the files
/// list them. Never empty: no match is an error that lists the names there are.
pub fn fleet_contexts(
    config: &Kubeconfig,
    named: &[String],
    glob: Option<&str>,
) -> Result<Vec<String>, ClusterError> {
    let contexts: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
    let mut picked: Vec<String> = Vec::new();
    if named.is_empty() {
        picked.extend(
            contexts
                .iter()
                .filter(|name| glob.is_none_or(|g| glob_matches(g, name)))
                .map(|name| (*name).to_owned()),
        );
        if picked.is_empty() {
            return Err(ClusterError::NoContextMatches {
                selector: glob.map(str::to_owned),
                available: list_or_none(&contexts),
            });
        }
    }
    for name in named {
        if !contexts.contains(&name.as_str()) {
            return Err(ClusterError::UnknownContext {
                name: name.clone(),
                available: list_or_none(&contexts),
            });
        }
        if !picked.contains(name) {
            picked.push(name.clone());
        }
    }
    Ok(picked)
}

/// A shell-style glob over a whole name: `*` any run of characters, `?` one character.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no file".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn globs_match_whole_names() {
        for (pattern, name, want) in [
            ("prod-*", "prod-eu", true),
            ("prod-*", "prod-", true),
            ("prod-*", "staging-prod-eu", false),
            ("*-eu", "prod-eu", true),
            ("*-eu", "prod-us", false),
            ("p?od", "prod", true),
            ("p?od", "prd", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_matches(pattern, name), want, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn fleet_contexts_are_named_or_picked_by_glob() {
        let config: Kubeconfig = serde_saphyr::from_str(
            "contexts:\n  - {name: staging, context: {cluster: s}}\n  - {name: prod-eu, context: {cluster: e}}\n  - {name: prod-us, context: {cluster: u}}\n",
        )
        .unwrap();
        assert_eq!(
            fleet_contexts(&config, &[], None).unwrap(),
            ["staging", "prod-eu", "prod-us"]
        );
        assert_eq!(
            fleet_contexts(&config, &[], Some("prod-*")).unwrap(),
            ["prod-eu", "prod-us"]
        );
        let named = [
            "prod-us".to_owned(),
            "staging".to_owned(),
            "prod-us".to_owned(),
        ];
        assert_eq!(
            fleet_contexts(&config, &named, None).unwrap(),
            ["prod-us", "staging"]
        );
        let e = fleet_contexts(&config, &[], Some("dev-*")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no context matches --context-selector 'dev-*'; available: staging, prod-eu, prod-us"
        );
        let e = fleet_contexts(&config, &["qa".to_owned()], None).unwrap_err();
        assert!(e.to_string().starts_with("unknown context 'qa'"), "{e}");
    }

    const DEV: &str = "\
apiVersion: v1
kind: Config
current-context: dev
clusters:
  - name: dev
    cluster: {server: 'https://dev.example:6443'}
  - name: shared
    cluster: {server: 'https://shared-from-dev.example'}
users:
  - name: alice
    user: {token: a}
contexts:
  - name: dev
    context: {cluster: dev, user: alice, namespace: web}
";
    const STAGING: &str = "\
apiVersion: v1
kind: Config
current-context: staging
clusters:
  - name: staging
    cluster: {server: 'https://staging.example'}
  - name: shared
    cluster: {server: 'https://shared-from-staging.example'}
users:
  - name: bob
    user: {token: b}
contexts:
  - name: staging
    context: {cluster: staging, user: bob}
  - name: dev
    context: {cluster: staging, user: bob, namespace: overridden}
  - name: via-shared
    context: {cluster: shared, user: bob}
";

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(files: &[(&str, &str)]) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in files {
                fs::write(dir.path().join(name), text).unwrap();
            }
            Fixture { dir }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn env_list(&self, names: &[&str]) -> Env {
            let paths: Vec<PathBuf> = names.iter().map(|n| self.path(n)).collect();
            Env {
                kubeconfig: Some(std::env::join_paths(paths).unwrap()),
                ..Env::default()
            }
        }
    }

    fn resolve(
        env: &Env,
        flag: Option<&Path>,
        selectors: &Selectors,
    ) -> Result<Selection, ClusterError> {
        let files = kubeconfig_files(flag, env)?;
        let config = load(&files)?;
        select(&config, &files, selectors)
    }

    #[test]
    fn merged_files_first_one_wins() {
        let fx = Fixture::new(&[("dev", DEV), ("staging", STAGING)]);
        let env = fx.env_list(&["dev", "missing-is-skipped", "staging"]);
        // current-context from the first file; `dev` defined in both: the first file's wins.
        let sel = resolve(&env, None, &Selectors::default()).unwrap();
        assert_eq!(sel.context, "dev");
        assert_eq!(sel.server, "https://dev.example:6443");
        assert_eq!(sel.namespace, "web");
        assert_eq!(sel.namespace_origin, NamespaceOrigin::Context);
        // Names only the second file defines are there too.
        let sel = resolve(
            &env,
            None,
            &Selectors {
                context: Some("staging".into()),
                ..Selectors::default()
            },
        )
        .unwrap();
        assert_eq!(sel.user.as_deref(), Some("bob"));
        assert_eq!(sel.namespace, "default");
        assert_eq!(sel.namespace_origin, NamespaceOrigin::Default);
        // A cluster both define: the first file's.
        let sel = resolve(
            &env,
            None,
            &Selectors {
                context: Some("via-shared".into()),
                ..Selectors::default()
            },
        )
        .unwrap();
        assert_eq!(sel.server, "https://shared-from-dev.example");
    }

    #[test]
    fn flag_beats_env_and_overrides_apply() {
        let fx = Fixture::new(&[("dev", DEV), ("staging", STAGING)]);
        let env = fx.env_list(&["dev"]);
        let sel = resolve(
            &env,
            Some(&fx.path("staging")),
            &Selectors {
                cluster: Some("shared".into()),
                namespace: Some("ops".into()),
                ..Selectors::default()
            },
        )
        .unwrap();
        assert_eq!(sel.context, "staging");
        assert_eq!(sel.cluster, "shared");
        assert_eq!(sel.server, "https://shared-from-staging.example");
        assert_eq!(sel.namespace, "ops");
        assert_eq!(sel.namespace_origin, NamespaceOrigin::Flag);
    }

    #[test]
    fn default_file_is_under_home() {
        let fx = Fixture::new(&[]);
        fs::create_dir_all(fx.path(".kube")).unwrap();
        fs::write(fx.path(".kube/config"), DEV).unwrap();
        let env = Env {
            home: Some(fx.dir.path().to_path_buf()),
            ..Env::default()
        };
        let files = kubeconfig_files(None, &env).unwrap();
        assert_eq!(files.origin, KubeconfigOrigin::Default);
        assert_eq!(files.paths, vec![fx.path(".kube/config")]);
        // No home config at all: no files, not an error yet (in-cluster may still apply).
        let empty = Env {
            home: Some(fx.path("nowhere")),
            ..Env::default()
        };
        assert!(kubeconfig_files(None, &empty).unwrap().paths.is_empty());
    }

    #[test]
    fn unknown_context_lists_the_ones_that_exist() {
        let fx = Fixture::new(&[("dev", DEV), ("staging", STAGING)]);
        let env = fx.env_list(&["dev", "staging"]);
        let err = resolve(
            &env,
            None,
            &Selectors {
                context: Some("prod".into()),
                ..Selectors::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown context 'prod'; available: dev, staging, via-shared"
        );
    }

    #[test]
    fn unknown_cluster_and_user_name_who_asked() {
        let fx = Fixture::new(&[("dev", DEV)]);
        let env = fx.env_list(&["dev"]);
        let err = resolve(
            &env,
            None,
            &Selectors {
                cluster: Some("nope".into()),
                ..Selectors::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown cluster 'nope' (named by --cluster); available: dev, shared"
        );
        let err = resolve(
            &env,
            None,
            &Selectors {
                user: Some("mallory".into()),
                ..Selectors::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown user 'mallory' (named by --user); available: alice"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let fx = Fixture::new(&[]);
        let missing = fx.path("nope.yaml");
        let err = kubeconfig_files(Some(&missing), &Env::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "kubeconfig {} does not exist; pass an existing file to --kubeconfig",
                missing.display()
            )
        );
        // Every KUBECONFIG entry missing: say which were looked at.
        let err = kubeconfig_files(None, &fx.env_list(&["a", "b"])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("no kubeconfig found (looked at KUBECONFIG="),
            "{text}"
        );
        assert!(text.contains(&fx.path("a").display().to_string()), "{text}");
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let fx = Fixture::new(&[
            ("good", DEV),
            ("broken", "apiVersion: v1\nclusters: [\n  - {name: x\n"),
            ("wrong-shape", "clusters: 42\n"),
        ]);
        for bad in ["broken", "wrong-shape"] {
            let env = fx.env_list(&["good", bad]);
            let err = resolve(&env, None, &Selectors::default()).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, ClusterError::KubeconfigMalformed { .. }),
                "{text}"
            );
            assert!(
                text.starts_with(&format!(
                    "kubeconfig {} is malformed: ",
                    fx.path(bad).display()
                )),
                "{text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }

    #[test]
    fn no_current_context_asks_for_one() {
        let fx = Fixture::new(&[(
            "nocurrent",
            &STAGING.replace("current-context: staging\n", ""),
        )]);
        let err = resolve(&fx.env_list(&["nocurrent"]), None, &Selectors::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("no current context is set in "), "{text}");
        assert!(
            text.ends_with("pass --context (available: staging, dev, via-shared)"),
            "{text}"
        );
    }

    #[test]
    fn empty_current_context_lets_a_later_file_set_it() {
        let fx = Fixture::new(&[
            (
                "empty",
                "apiVersion: v1\nkind: Config\ncurrent-context: \"\"\n",
            ),
            ("staging", STAGING),
        ]);
        let sel = resolve(
            &fx.env_list(&["empty", "staging"]),
            None,
            &Selectors::default(),
        )
        .unwrap();
        assert_eq!(sel.context, "staging");
    }
}
