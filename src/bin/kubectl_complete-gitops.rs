//! `kubectl_complete-gitops`: kubectl (1.26+) runs it for `kubectl gitops WORDS<TAB>`, with the
//! words after `kubectl gitops` as arguments (the last one being completed), and reads the
//! candidates from stdout. Shipped beside `kubectl-gitops`, since Krew links only the plugin.

use std::io::Write;
use std::process::ExitCode;

use kubectl_gitops::env::Env;

fn main() -> ExitCode {
    let env = Env::from_process();
    let words: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let mut out = std::io::stdout().lock();
    match kubectl_gitops::complete(&words, &env, &mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}
