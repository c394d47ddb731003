//! Fleet runs: one command over several kube contexts (`--context a,b`, `--all-contexts`,
//! `--context-selector`). Every context has its own connection and cluster reads, several at
//! once (`--context-concurrency`), so a slow or unreachable cluster holds up only its own row;
//! Git is read once for all of them through one shared [`crate::source::Locator`].

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;

use anyhow::{Result, bail};
use futures_util::StreamExt;

use crate::cli::GlobalArgs;
use crate::cluster::kubeconfig;
use crate::env::Env;

/// The contexts of a fleet run, or None when the command line names at most one context (the
/// run is then the single-context run it always was).
pub fn contexts(global: &GlobalArgs, env: &Env) -> Result<Option<Vec<String>>> {
    let fleet =
        global.all_contexts || global.context_selector.is_some() || global.context.len() > 1;
    if !fleet {
        return Ok(None);
    }
    if global.cluster.is_some() || global.user.is_some() {
        bail!(
            "--cluster and --user pick one cluster and user, and cannot be used with several \
             contexts; name the contexts only"
        );
    }
    let files = kubeconfig::kubeconfig_files(global.kubeconfig.as_deref(), env)?;
    if files.paths.is_empty() {
        bail!(
            "several contexts were asked for, but there is no kubeconfig (set --kubeconfig or \
             $KUBECONFIG, or create ~/.kube/config)"
        );
    }
    let config = kubeconfig::load(&files)?;
    Ok(Some(kubeconfig::fleet_contexts(
        &config,
        &global.context,
        global.context_selector.as_deref(),
    )?))
}

/// Refuses a fleet run for a command that works on one cluster at a time.
pub fn single(global: &GlobalArgs, env: &Env, command: &str, why: &str) -> Result<()> {
    if let Some(names) = contexts(global, env)? {
        bail!(
            "{command} works on one context at a time ({why}); {} contexts were named: pick one \
             with --context NAME",
            names.len()
        );
    }
    Ok(())
}

/// The global flags of one member of the fleet: `global` with only `context` named.
pub fn member_flags(global: &GlobalArgs, context: &str) -> GlobalArgs {
    GlobalArgs {
        context: vec![context.to_owned()],
        all_contexts: false,
        context_selector: None,
        ..global.clone()
    }
}

/// What one context's run gave.
pub struct Member<T> {
    pub context: String,
    pub result: Result<T>,
}

/// Runs `run` for every context, `concurrency` at a time; results in the order of `contexts`.
/// Each run writes its stderr through its own [`SharedLines`] into `err`, as it goes, each
/// line led by its context. The runs share this task: a context waiting on its server never
/// holds up another.
pub async fn each<'s, 'w, T, F, Fut>(
    contexts: &'s [String],
    concurrency: u16,
    err: &'s RefCell<&'w mut dyn Write>,
    run: F,
) -> Vec<Member<T>>
where
    F: Fn(String, SharedLines<'s, 'w>) -> Fut,
    Fut: Future<Output = (Result<T>, SharedLines<'s, 'w>)>,
{
    futures_util::stream::iter(contexts)
        .map(|context| {
            let future = run(context.clone(), SharedLines::new(err, Some(context)));
            async move {
                let (result, mut said) = future.await;
                let _ = said.finish();
                Member {
                    context: context.clone(),
                    result,
                }
            }
        })
        .buffered(usize::from(concurrency.max(1)))
        .collect()
        .await
}

/// The environment a member runs with: no progress bar (several would draw over each other).
pub fn member_env(env: &Env) -> Env {
    Env {
        stderr_tty: false,
        ..env.clone()
    }
}

/// A member's stream: whole lines into the shared one (led by `[context]` on stderr), so that
/// members never cut into each other's lines.
pub struct SharedLines<'s, 'w> {
    shared: &'s RefCell<&'w mut dyn Write>,
    prefix: Option<&'s str>,
    line: Vec<u8>,
}

impl<'s, 'w> SharedLines<'s, 'w> {
    /// A stream into `shared`, each line led by `[prefix] ` when there is one.
    pub fn new(shared: &'s RefCell<&'w mut dyn Write>, prefix: Option<&'s str>) -> Self {
        SharedLines {
            shared,
            prefix,
            line: Vec::new(),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let mut shared = self.shared.borrow_mut();
        if let Some(prefix) = self.prefix {
            write!(shared, "[{prefix}] ")?;
        }
        shared.write_all(line)
    }
}

impl Write for SharedLines<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..=at]);
            let line = std::mem::take(&mut self.line);
            self.write_line(&line)?;
            rest = &rest[at + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    /// Whole lines only: a line still being written waits for its end (or [`Self::finish`]).
    fn flush(&mut self) -> std::io::Result<()> {
        self.shared.borrow_mut().flush()
    }
}

impl SharedLines<'_, '_> {
    /// Writes what is left of an unfinished line, ended.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let mut line = std::mem::take(&mut self.line);
            line.push(b'\n');
            self.write_line(&line)?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn members_run_at_once_and_come_back_in_order() {
        let names: Vec<String> = ["slow", "fast", "broken"].map(String::from).to_vec();
        // "slow" finishes only once "fast" has: run one after the other, this never ends.
        let fast_done = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut sink: Vec<u8> = Vec::new();
        {
            let err: RefCell<&mut dyn Write> = RefCell::new(&mut sink);
            let members = each(&names, 8, &err, |context, mut said| {
                let fast_done = fast_done.clone();
                async move {
                    write!(said, "working on {context}").unwrap();
                    match context.as_str() {
                        "slow" => fast_done.notified().await,
                        "fast" => fast_done.notify_one(),
                        _ => {}
                    }
                    writeln!(said, ", done").unwrap();
                    let result = if context == "broken" {
                        Err(anyhow::anyhow!("unreachable"))
                    } else {
                        Ok(context.len())
                    };
                    (result, said)
                }
            });
            let members = tokio::time::timeout(std::time::Duration::from_secs(30), members)
                .await
                .expect("the members ran at once");
            let got: Vec<(&str, Option<usize>)> = members
                .iter()
                .map(|m| (m.context.as_str(), m.result.as_ref().ok().copied()))
                .collect();
            assert_eq!(
                got,
                [("slow", Some(4)), ("fast", Some(4)), ("broken", None)]
            );
        }
        // Whole lines, each led by its context, in the order they were finished.
        let said = String::from_utf8(sink).unwrap();
        let mut lines: Vec<&str> = said.lines().collect();
        assert_eq!(
            lines.last(),
            Some(&"[slow] working on slow, done"),
            "{said}"
        );
        lines.sort();
        assert_eq!(
            lines,
            [
                "[broken] working on broken, done",
                "[fast] working on fast, done",
                "[slow] working on slow, done"
            ]
        );
    }

    #[test]
    fn one_context_is_no_fleet() {
        let env = Env::default();
        let mut global = GlobalArgs {
            context: vec!["dev".into()],
            ..GlobalArgs::default()
        };
        assert!(contexts(&global, &env).unwrap().is_none());
        global.context.push("prod".into());
        global.cluster = Some("c".into());
        let e = contexts(&global, &env).unwrap_err().to_string();
        assert!(e.starts_with("--cluster and --user"), "{e}");
    }

    #[test]
    fn members_write_whole_lines_led_by_their_context() {
        let mut sink: Vec<u8> = Vec::new();
        {
            let shared: RefCell<&mut dyn Write> = RefCell::new(&mut sink);
            let mut a = SharedLines::new(&shared, Some("a"));
            let mut b = SharedLines::new(&shared, Some("b"));
            write!(a, "first half ").unwrap();
            a.flush().unwrap();
            writeln!(b, "b's line").unwrap();
            writeln!(a, "second half").unwrap();
            write!(b, "unfinished").unwrap();
            b.finish().unwrap();
            a.finish().unwrap();
        }
        assert_eq!(
            String::from_utf8(sink).unwrap(),
            "[b] b's line\n[a] first half second half\n[b] unfinished\n"
        );
    }
}
