//! Completion output: candidates in cobra's protocol, as kubectl reads them from
//! `kubectl_complete-gitops`, and the standalone shell scripts.

use std::io::Write;

use crate::completion::Candidate;

/// One candidate per line, `value<TAB>help` when there is help, then `:<directive>`.
pub fn render_candidates(
    out: &mut dyn Write,
    candidates: &[Candidate],
    directive: u32,
) -> std::io::Result<()> {
    for candidate in candidates {
        // A line break or tab in either part would break the protocol.
        let clean = |text: &str| text.replace(['\t', '\n', '\r'], " ");
        if candidate.help.is_empty() {
            writeln!(out, "{}", clean(&candidate.value))?;
        } else {
            writeln!(
                out,
                "{}\t{}",
                clean(&candidate.value),
                clean(&candidate.help)
            )?;
        }
    }
    writeln!(out, ":{directive}")
}

/// The completion script of `shell` for `command`, the whole command line.
pub fn render_completion_script(
    out: &mut dyn Write,
    command: clap::Command,
    shell: clap_complete::Shell,
) -> std::io::Result<()> {
    // Named as the binary is on PATH: shells complete commands, and `kubectl gitops` is two.
    let mut command = command.name("kubectl-gitops");
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kubectl-gitops", &mut script);
    out.write_all(&script)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn candidates_follow_cobras_protocol() {
        let mut out = Vec::new();
        render_candidates(
            &mut out,
            &[
                Candidate::new("dev", ""),
                Candidate::new("diff", "Report what drifted\tfrom Git"),
            ],
            4,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "dev\ndiff\tReport what drifted from Git\n:4\n"
        );
        let mut out = Vec::new();
        render_candidates(&mut out, &[], 0).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), ":0\n");
    }

    #[test]
    fn scripts_name_the_binary() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            render_completion_script(&mut out, crate::cli::Cli::command(), shell).unwrap();
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains("kubectl-gitops"), "{shell}: {script}");
            assert!(script.contains("blame"), "{shell}");
            assert!(!script.contains("kubectl gitops"), "{shell}");
        }
    }
}
