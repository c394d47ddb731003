//! Shell completion, worked out from the words typed so far and the clap definition of the
//! command line, so that subcommands and flags never drift from what the parser accepts.
//!
//! kubectl (1.26+) runs `kubectl_complete-gitops WORDS...` for `kubectl gitops WORDS<TAB>`, the
//! last word being the one under the cursor (empty for a new word), and reads the answer in
//! cobra's protocol: one candidate per line, `value<TAB>help` where there is help, then
//! `:<directive>`. This module is pure: it says what the word should be ([`Slot`]);
//! `commands::completion` looks names up in the kubeconfig or the cluster, and `report` prints.

use std::collections::BTreeSet;

use clap::Command;
use clap::builder::ValueHint;

/// The hidden first argument that makes `kubectl-gitops` answer completion requests, as
/// cobra's `__complete` does: `kubectl-gitops __complete WORDS...`.
pub const HIDDEN_COMMAND: &str = "__complete";

/// cobra's `ShellCompDirective` bits, which kubectl hands to the shell.
pub mod directive {
    /// Let the shell complete file names when nothing is offered.
    pub const DEFAULT: u32 = 0;
    /// Do not add a space after the candidate (`deployments/` is followed by a name).
    pub const NO_SPACE: u32 = 2;
    /// Do not fall back to file names.
    pub const NO_FILE_COMP: u32 = 4;
}

/// One completion: the text to insert, and a description shells may show beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub help: String,
}

impl Candidate {
    pub fn new(value: impl Into<String>, help: impl Into<String>) -> Candidate {
        Candidate {
            value: value.into(),
            help: help.into(),
        }
    }
}

/// What the word under the cursor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Known from the definition alone: subcommands, flags, fixed values.
    Fixed(Vec<Candidate>),
    /// Context names from the kubeconfig (`--context`).
    Contexts,
    /// Cluster names from the kubeconfig (`--cluster`).
    Clusters,
    /// User names from the kubeconfig (`--user`).
    Users,
    /// Namespace names from the cluster (`-n`).
    Namespaces,
    /// A resource type; `name_required` when the command needs TYPE/NAME, so that the type is
    /// offered as `TYPE/` and the name follows without a space.
    Types { name_required: bool },
    /// Names of objects of `type_text` (as typed before the `/`) from the cluster.
    Names { type_text: String },
    /// A path: the shell completes file names.
    Files,
    /// Free text (a selector, a revision): nothing to offer.
    Nothing,
}

/// What to complete, and the flags typed so far that choose where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub slot: Slot,
    /// What the word holds so far, after `prefix`: candidates must start with it.
    pub current: String,
    /// What every candidate is preceded by in the word: `--context=` for the attached form,
    /// `deploy/` when a name follows a type.
    pub prefix: String,
    /// The global flags typed so far (`--context dev`, `-nweb` as `--namespace=web`, ...), for
    /// parsing with the real parser: they pick the kubeconfig, context, namespace and timeout.
    pub global_words: Vec<String>,
}

/// Commands whose objects must be named: their types are offered as `TYPE/`.
const NAME_REQUIRED: &[&str] = &["blame", "revert"];

/// Works out what the last word of `words` should be. `cli` is the whole command line
/// definition (`Cli::command()`).
pub fn analyse(cli: &Command, words: &[String]) -> Request {
    let mut cli = cli.clone();
    // Propagates the global flags into every subcommand.
    cli.build();
    let (current, done) = match words.split_last() {
        Some((last, done)) => (last.as_str(), done),
        None => ("", &[][..]),
    };

    let mut command: Option<&Command> = None;
    let mut positionals = 0usize;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut global_words = Vec::new();
    // The flag whose value the next word is.
    let mut pending: Option<&clap::Arg> = None;
    let mut only_positionals = false;
    let mut unknown_command = false;

    for word in done {
        let scope = command.unwrap_or(&cli);
        if let Some(flag) = pending.take() {
            if flag.is_global_set() {
                global_words.push(word.clone());
            }
            continue;
        }
        if !only_positionals && word == "--" {
            only_positionals = true;
            continue;
        }
        if only_positionals || word == "-" || !word.starts_with('-') {
            match command {
                None => match cli.find_subcommand(word) {
                    Some(sub) => command = Some(sub),
                    None => unknown_command = true,
                },
                Some(_) => positionals += 1,
            }
            continue;
        }
        for (arg, attached) in flags_in(scope, word) {
            used.insert(arg.get_id().to_string());
            let takes_next = consumes_next_word(arg) && attached.is_none();
            // Kept in their long form, so that a cluster such as `-An` splits cleanly.
            if let Some(long) = arg.get_long().filter(|_| arg.is_global_set()) {
                global_words.push(match &attached {
                    Some(value) => format!("--{long}={value}"),
                    None => format!("--{long}"),
                });
            }
            if takes_next {
                pending = Some(arg);
            }
        }
    }

    // The value of a pending flag is the word being completed: that flag is not parsed yet.
    if pending.is_some_and(|flag| flag.is_global_set()) {
        global_words.pop();
    }
    let scope = command.unwrap_or(&cli);
    let request = |slot, current: &str, prefix: &str| Request {
        slot,
        current: current.to_owned(),
        prefix: prefix.to_owned(),
        global_words: global_words.clone(),
    };
    if unknown_command {
        return request(Slot::Nothing, current, "");
    }
    if let Some(flag) = pending {
        return request(value_slot(flag), current, "");
    }
    if !only_positionals && current.starts_with('-') {
        if let Some((name, value)) = current
            .strip_prefix("--")
            .and_then(|rest| rest.split_once('='))
        {
            let prefix = format!("--{name}=");
            let slot = scope
                .get_arguments()
                .find(|a| a.get_long() == Some(name))
                .map_or(Slot::Nothing, value_slot);
            return request(slot, value, &prefix);
        }
        return request(
            Slot::Fixed(flag_candidates(scope, current, &used)),
            current,
            "",
        );
    }
    let Some(sub) = command else {
        let subcommands = cli
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| Candidate::new(s.get_name(), help_line(s.get_about())))
            .collect();
        return request(Slot::Fixed(subcommands), current, "");
    };
    let mut args: Vec<&clap::Arg> = sub.get_positionals().filter(|a| !a.is_hide_set()).collect();
    args.sort_by_key(|a| a.get_index());
    let arg = match args.get(positionals) {
        Some(arg) => Some(*arg),
        // A last positional that takes many values takes this one too.
        None => args
            .last()
            .copied()
            .filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1)),
    };
    let Some(arg) = arg else {
        return request(Slot::Nothing, current, "");
    };
    let takes_objects = arg
        .get_value_names()
        .is_some_and(|names| names.iter().any(|n| n.as_str().starts_with("TYPE")));
    if takes_objects {
        return match current.split_once('/') {
            Some((type_text, name)) => request(
                Slot::Names {
                    type_text: type_text.to_owned(),
                },
                name,
                &format!("{type_text}/"),
            ),
            None => request(
                Slot::Types {
                    name_required: NAME_REQUIRED.contains(&sub.get_name()),
                },
                current,
                "",
            ),
        };
    }
    request(value_slot(arg), current, "")
}

/// Keeps the candidates that start with `request.current`, each preceded by `request.prefix`,
/// sorted and without repeats; and the directive for the shell.
pub fn finish(request: &Request, candidates: Vec<Candidate>) -> (Vec<Candidate>, u32) {
    let mut seen = BTreeSet::new();
    let mut kept: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| c.value.starts_with(&request.current))
        .filter(|c| seen.insert(c.value.clone()))
        .map(|c| Candidate {
            value: format!("{}{}", request.prefix, c.value),
            help: c.help,
        })
        .collect();
    // Subcommands and flags keep the definition's order; names are sorted.
    if !matches!(request.slot, Slot::Fixed(_)) {
        kept.sort_by(|a, b| a.value.cmp(&b.value));
    }
    let directive = match &request.slot {
        Slot::Files => directive::DEFAULT,
        Slot::Types {
            name_required: true,
        } => directive::NO_SPACE | directive::NO_FILE_COMP,
        _ => directive::NO_FILE_COMP,
    };
    (kept, directive)
}

/// The value a flag or positional takes: fixed values, names to look up, a path, or free text.
fn value_slot(arg: &clap::Arg) -> Slot {
    let values: Vec<Candidate> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| Candidate::new(v.get_name(), help_line(v.get_help())))
        .collect();
    if !values.is_empty() {
        return Slot::Fixed(values);
    }
    match arg.get_id().as_str() {
        "context" => return Slot::Contexts,
        "cluster" => return Slot::Clusters,
        "user" => return Slot::Users,
        "namespace" => return Slot::Namespaces,
        _ => {}
    }
    let path_named = arg
        .get_value_names()
        .is_some_and(|names| names.iter().any(|n| n.as_str().contains("PATH")));
    match arg.get_value_hint() {
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath => Slot::Files,
        _ if path_named => Slot::Files,
        _ => Slot::Nothing,
    }
}

/// The flags a word sets, each with its attached value if any: `--context=dev`, `-n`,
/// `-nweb`, `-Av`. Unknown flags are skipped.
fn flags_in<'a>(scope: &'a Command, word: &str) -> Vec<(&'a clap::Arg, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (long, None),
        };
        return scope
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            })
            .map(|a| (a, value))
            .into_iter()
            .collect();
    }
    let shorts = word.trim_start_matches('-');
    let mut found = Vec::new();
    for (at, c) in shorts.char_indices() {
        let Some(arg) = scope.get_arguments().find(|a| a.get_short() == Some(c)) else {
            break;
        };
        if arg.get_action().takes_values() {
            let rest = &shorts[at + c.len_utf8()..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            found.push((arg, (!rest.is_empty()).then(|| rest.to_owned())));
            break;
        }
        found.push((arg, None));
    }
    found
}

/// Whether a flag written alone takes the next word as its value (`--context dev`), as opposed
/// to a switch or a flag whose value must be attached (`-v=2`, `--server-side=false`).
fn consumes_next_word(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
        && !arg.is_require_equals_set()
        && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

/// The flags of `scope` worth offering for `current`: long ones always, short ones unless
/// `--` was typed; not those already given, unless they may repeat.
fn flag_candidates(scope: &Command, current: &str, used: &BTreeSet<String>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for arg in scope.get_arguments() {
        if arg.is_positional() || arg.is_hide_set() {
            continue;
        }
        let repeats = matches!(
            arg.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        );
        if used.contains(arg.get_id().as_str()) && !repeats {
            continue;
        }
        let help = help_line(arg.get_help());
        if let Some(long) = arg.get_long() {
            out.push(Candidate::new(format!("--{long}"), help.clone()));
        }
        if let Some(short) = arg.get_short().filter(|_| !current.starts_with("--")) {
            out.push(Candidate::new(format!("-{short}"), help));
        }
    }
    out
}

/// The first line of a help text, as plain text.
fn help_line(help: Option<&clap::builder::StyledStr>) -> String {
    help.map(|h| h.to_string())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn analyse_words(words: &[&str]) -> Request {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        analyse(&crate::cli::Cli::command(), &words)
    }

    fn fixed_values(request: &Request) -> Vec<String> {
        match &request.slot {
            Slot::Fixed(candidates) => finish(request, candidates.clone())
                .0
                .into_iter()
                .map(|c| c.value)
                .collect(),
            other => panic!("expected fixed candidates, got {other:?}"),
        }
    }

    #[test]
    fn first_word_is_a_subcommand() {
        let request = analyse_words(&[""]);
        let values = fixed_values(&request);
        for sub in [
            "diff",
            "trace",
            "blame",
            "stamp",
            "context",
            "version",
            "completion",
        ] {
            assert!(values.contains(&sub.to_owned()), "{sub} in {values:?}");
        }
        assert!(!values.iter().any(|v| v.starts_with("__")), "{values:?}");
        let Slot::Fixed(all) = &request.slot else {
            unreachable!()
        };
        let diff = all.iter().find(|c| c.value == "diff").unwrap();
        assert_eq!(
            diff.help,
            "Report what drifted from Git, and who changed it"
        );
        assert_eq!(fixed_values(&analyse_words(&["bl"])), ["blame"]);
        // No words at all is the same as one empty word.
        assert_eq!(analyse_words(&[]).slot, request.slot);
        // Global flags before the subcommand do not count as one.
        let values = fixed_values(&analyse_words(&["--context", "dev", "-n", "web", "c"]));
        assert_eq!(values, ["context", "completion"]);
    }

    #[test]
    fn what_each_word_is() {
        let cases: &[(&[&str], Slot, &str, &str)] = &[
            (&["diff", "--context", ""], Slot::Contexts, "", ""),
            (&["diff", "--context", "de"], Slot::Contexts, "de", ""),
            (&["--context=st"], Slot::Contexts, "st", "--context="),
            (&["blame", "--cluster", ""], Slot::Clusters, "", ""),
            (&["trace", "--user", "a"], Slot::Users, "a", ""),
            (&["diff", "-n", ""], Slot::Namespaces, "", ""),
            (&["-n", "kube-"], Slot::Namespaces, "kube-", ""),
            (
                &["diff", "--namespace=we"],
                Slot::Namespaces,
                "we",
                "--namespace=",
            ),
            (
                &["blame", ""],
                Slot::Types {
                    name_required: true,
                },
                "",
                "",
            ),
            (
                &["diff", "deploy/web", "cm"],
                Slot::Types {
                    name_required: false,
                },
                "cm",
                "",
            ),
            (
                &["blame", "deploy/"],
                Slot::Names {
                    type_text: "deploy".into(),
                },
                "",
                "deploy/",
            ),
            (
                &["-n", "web", "blame", "-A", "deployments.apps/we"],
                Slot::Names {
                    type_text: "deployments.apps".into(),
                },
                "we",
                "deployments.apps/",
            ),
            // blame takes one object; a second word is not one.
            (&["blame", "deploy/web", ""], Slot::Nothing, "", ""),
            (&["diff", "-f", ""], Slot::Files, "", ""),
            (&["--kubeconfig", "~/.ku"], Slot::Files, "~/.ku", ""),
            (&["stamp", ""], Slot::Files, "", ""),
            (&["diff", "-l", ""], Slot::Nothing, "", ""),
            (&["nonsense", ""], Slot::Nothing, "", ""),
            // `-v` takes its level attached, so the next word is a subcommand again.
            (&["-v", "diff", "-n", ""], Slot::Namespaces, "", ""),
            // After `--`, a dash is part of a name.
            (
                &["diff", "--", "-x"],
                Slot::Types {
                    name_required: false,
                },
                "-x",
                "",
            ),
        ];
        for (words, slot, current, prefix) in cases {
            let request = analyse_words(words);
            assert_eq!(&request.slot, slot, "{words:?}");
            assert_eq!(request.current, *current, "{words:?}");
            assert_eq!(request.prefix, *prefix, "{words:?}");
        }
    }

    #[test]
    fn fixed_values_come_from_the_definition() {
        assert_eq!(
            fixed_values(&analyse_words(&["diff", "-o", ""])),
            ["diff", "table", "json", "yaml", "markdown"]
        );
        assert_eq!(
            fixed_values(&analyse_words(&["diff", "--server-side=f"])),
            ["--server-side=false"]
        );
        assert_eq!(
            fixed_values(&analyse_words(&["completion", ""])),
            ["bash", "elvish", "fish", "powershell", "zsh"]
        );
        assert_eq!(fixed_values(&analyse_words(&["--color", "n"])), ["never"]);
    }

    #[test]
    fn flags_of_the_subcommand_and_global_ones() {
        let values = fixed_values(&analyse_words(&["diff", "--s"]));
        assert_eq!(values, ["--selector", "--server-side", "--show-ignored"]);
        let values = fixed_values(&analyse_words(&["diff", "-"]));
        for flag in [
            "--context",
            "-n",
            "--namespace",
            "-A",
            "--ignore",
            "-o",
            "--help",
        ] {
            assert!(values.contains(&flag.to_owned()), "{flag} in {values:?}");
        }
        // Given once, not offered again; --ignore and --context (a fleet) may repeat.
        let values = fixed_values(&analyse_words(&[
            "diff",
            "--context=dev",
            "-n",
            "x",
            "--ignore",
            "a",
            "--",
        ]));
        assert!(values.contains(&"--context".to_owned()), "{values:?}");
        assert!(!values.contains(&"--namespace".to_owned()), "{values:?}");
        assert!(values.contains(&"--ignore".to_owned()), "{values:?}");
        // Only long flags after `--`.
        assert!(values.iter().all(|v| v.starts_with("--")), "{values:?}");
    }

    #[test]
    fn global_flags_are_kept_in_long_form() {
        let request = analyse_words(&[
            "--kubeconfig",
            "/k",
            "diff",
            "--context=dev",
            "-o",
            "json",
            "-nweb",
            "--request-timeout",
            "2s",
            "-A",
            "deploy/",
        ]);
        assert_eq!(
            request.global_words,
            [
                "--kubeconfig",
                "/k",
                "--context=dev",
                "--namespace=web",
                "--request-timeout",
                "2s",
                "--all-namespaces"
            ]
        );
    }

    #[test]
    fn the_flag_being_completed_is_not_kept() {
        let request = analyse_words(&["--request-timeout=1s", "-n", ""]);
        assert_eq!(request.slot, Slot::Namespaces);
        assert_eq!(request.global_words, ["--request-timeout=1s"]);
        let request = analyse_words(&["-n", "web", "--context", "d"]);
        assert_eq!(request.global_words, ["--namespace", "web"]);
    }

    #[test]
    fn finish_filters_prefixes_and_picks_the_directive() {
        let request = analyse_words(&["blame", "deploy/w"]);
        let (kept, directive) = finish(
            &request,
            vec![
                Candidate::new("web", ""),
                Candidate::new("api", ""),
                Candidate::new("worker", ""),
                Candidate::new("web", ""),
            ],
        );
        let values: Vec<_> = kept.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, ["deploy/web", "deploy/worker"]);
        assert_eq!(directive, directive::NO_FILE_COMP);
        let (_, directive) = finish(&analyse_words(&["blame", "de"]), vec![]);
        assert_eq!(directive, directive::NO_SPACE | directive::NO_FILE_COMP);
        let (_, directive) = finish(&analyse_words(&["stamp", ""]), vec![]);
        assert_eq!(directive, directive::DEFAULT);
    }
}
