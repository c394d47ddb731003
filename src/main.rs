//! `kubectl-gitops`: parse flags, run the command, map the outcome to an exit code. Nothing else.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kubectl_gitops::cli::Cli;
use kubectl_gitops::env::Env;
use kubectl_gitops::report::Terminal;

fn main() -> ExitCode {
    let env = Env::from_process();
    // `kubectl-gitops __complete WORDS...` answers completion requests, as cobra's plugins do.
    // It is taken before clap, which would read the words as our own flags.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.get(1).map(String::as_str) == Some(kubectl_gitops::completion::HIDDEN_COMMAND) {
        return answer_completion(&args[2..], &env);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; usage mistakes exit 2, like every error.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let terminal = Terminal::new(cli.global.color, &env);
    let mut out = terminal.stdout();
    let mut err = terminal.stderr();
    let outcome = kubectl_gitops::run(cli, &env, &mut out, &mut err);
    let _ = out.flush();
    match outcome {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        // A closed pipe (`| head`) is the reader's choice, not our failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            terminal.error_line(&mut err, &format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}

fn answer_completion(words: &[String], env: &Env) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match kubectl_gitops::complete(words, env, &mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
