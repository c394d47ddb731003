//! `kubectl gitops completion SHELL`, and the answers to completion requests
//! (`kubectl_complete-gitops WORDS...`): names from the kubeconfig and the cluster for the slot
//! that `completion::analyse` found.
//!
//! A completion request never fails and never waits long: with no kubeconfig, no cluster, or
//! no rights it offers nothing, within `--request-timeout` as typed on the line (else
//! [`DEFAULT_TIMEOUT`]).

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use crate::Outcome;
use crate::cli::{Cli, CompletionArgs, GlobalArgs};
use crate::cluster::discovery::Resource;
use crate::cluster::{self, Cluster, kubeconfig};
use crate::completion::{self, Candidate, Request, Slot};
use crate::env::Env;
use crate::report;

/// How long a completion may wait for the cluster when no `--request-timeout` is typed: long
/// enough for a LIST on a remote cluster, short enough not to freeze the prompt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `kubectl gitops completion SHELL`.
pub fn script(args: &CompletionArgs, out: &mut dyn Write) -> Result<Outcome> {
    report::render_completion_script(out, Cli::command(), args.shell)?;
    Ok(Outcome::Clean)
}

/// Answers one completion request: `words` are those after `kubectl gitops`, the last one
/// being completed.
pub async fn complete(words: &[String], env: &Env, out: &mut dyn Write) -> std::io::Result<()> {
    let request = completion::analyse(&Cli::command(), words);
    let found = lookup(&request, env).await.unwrap_or_default();
    let (candidates, directive) = completion::finish(&request, found);
    report::render_candidates(out, &candidates, directive)
}

/// The names that fit the slot; None when they could not be had (no kubeconfig, cluster down,
/// forbidden, timed out).
async fn lookup(request: &Request, env: &Env) -> Option<Vec<Candidate>> {
    let global = global_flags(&request.global_words);
    let names = |names: Vec<String>| names.into_iter().map(|n| Candidate::new(n, "")).collect();
    match &request.slot {
        Slot::Fixed(candidates) => Some(candidates.clone()),
        Slot::Files | Slot::Nothing => Some(Vec::new()),
        Slot::Contexts | Slot::Clusters | Slot::Users => {
            let files = kubeconfig::kubeconfig_files(global.kubeconfig.as_deref(), env).ok()?;
            let config = kubeconfig::load(&files).ok()?;
            Some(names(match request.slot {
                Slot::Contexts => config.contexts.into_iter().map(|c| c.name).collect(),
                Slot::Clusters => config.clusters.into_iter().map(|c| c.name).collect(),
                _ => config.auth_infos.into_iter().map(|u| u.name).collect(),
            }))
        }
        Slot::Namespaces | Slot::Types { .. } | Slot::Names { .. } => {
            let mut options = super::connect_options(&global).ok()?;
            let limit = options.request_timeout.unwrap_or(DEFAULT_TIMEOUT);
            options.request_timeout = Some(limit);
            let from_cluster = async {
                let cluster = cluster::connect(&options, env).await.ok()?;
                from_cluster(&cluster, &request.slot, &global, env).await
            };
            tokio::time::timeout(limit, from_cluster)
                .await
                .ok()
                .flatten()
                .map(names)
        }
    }
}

async fn from_cluster(
    cluster: &Cluster,
    slot: &Slot,
    global: &GlobalArgs,
    env: &Env,
) -> Option<Vec<String>> {
    let object_names = |items: Vec<cluster::LiveObject>| {
        items
            .iter()
            .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    match slot {
        Slot::Namespaces => {
            let namespaces = Resource {
                group: String::new(),
                version: "v1".into(),
                kind: "Namespace".into(),
                plural: "namespaces".into(),
                singular: "namespace".into(),
                short_names: vec!["ns".into()],
                namespaced: false,
                verbs: vec!["list".into()],
            };
            cluster
                .list(&namespaces, None, None)
                .await
                .ok()
                .map(object_names)
        }
        Slot::Types { name_required } => {
            let discovery = cluster::cache::discovery(cluster, env.cache_dir.as_deref(), false)
                .await
                .ok()?;
            let listable: Vec<&Resource> = discovery
                .resources
                .iter()
                .filter(|r| r.verbs.iter().any(|v| v == "list"))
                .collect();
            Some(
                listable
                    .iter()
                    .map(|r| {
                        // The plural alone where it is unambiguous, as users type it.
                        let shared = listable.iter().filter(|o| o.plural == r.plural).count() > 1;
                        let name = if shared {
                            r.qualified_name()
                        } else {
                            r.plural.clone()
                        };
                        if *name_required {
                            format!("{name}/")
                        } else {
                            name
                        }
                    })
                    .collect(),
            )
        }
        Slot::Names { type_text } => {
            let discovery = cluster::cache::discovery(cluster, env.cache_dir.as_deref(), false)
                .await
                .ok()?;
            let resource = discovery.resolve(type_text).ok()?;
            let namespace = (!global.all_namespaces).then_some(cluster.target.namespace.as_str());
            cluster
                .list(resource, namespace, None)
                .await
                .ok()
                .map(object_names)
        }
        _ => None,
    }
}

/// The global flags typed on the line, read by the real parser; the defaults when they do not
/// parse (a half-typed timeout must not stop completion).
fn global_flags(words: &[String]) -> GlobalArgs {
    let line = std::iter::once("kubectl-gitops")
        .chain(words.iter().map(String::as_str))
        .chain(std::iter::once("version"));
    Cli::try_parse_from(line)
        .map(|cli| cli.global)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_are_read_by_the_real_parser() {
        let words: Vec<String> = [
            "--kubeconfig",
            "/k",
            "--context=dev",
            "--namespace=web",
            "--request-timeout",
            "1m",
        ]
        .map(String::from)
        .to_vec();
        let global = global_flags(&words);
        assert_eq!(global.kubeconfig.as_deref(), Some("/k".as_ref()));
        assert_eq!(global.context, ["dev"]);
        assert_eq!(global.namespace.as_deref(), Some("web"));
        assert_eq!(
            global.request_timeout.and_then(|t| t.limit()),
            Some(Duration::from_secs(60))
        );
        // Unparsable: the defaults.
        let global = global_flags(&["--request-timeout".into(), "soon".into()]);
        assert_eq!(global.request_timeout, None);
    }

    #[tokio::test]
    async fn no_kubeconfig_means_no_candidates_and_no_error() {
        let home = tempfile::tempdir().unwrap();
        let env = Env {
            home: Some(home.path().to_path_buf()),
            ..Env::default()
        };
        for words in [
            &["diff", "--context", ""][..],
            &["-n", ""],
            &["blame", "deploy/"],
        ] {
            let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
            let mut out = Vec::new();
            complete(&words, &env, &mut out).await.unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), ":4\n", "{words:?}");
        }
    }
}
