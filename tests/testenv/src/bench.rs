//! What the benchmark binaries (`src/bin/bench-*.rs`) share: medians, rounding, the load
//! average they print beside their figures, their flag parsing, and Flux's status.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::ControlPlane;

/// The median of `values`; NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `x` rounded to three decimals, for JSON figures.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them (empty where it is not).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text`, the value of `flag`, as a number.
pub fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T> {
    text.parse()
        .ok()
        .with_context(|| format!("{flag}: {text:?} is not a valid number"))
}

/// Writes the status kustomize-controller leaves after applying `head`: Ready, with that revision
/// applied, on each Kustomization of `names` in `ns` (the benchmarks apply as Flux does, without
/// its controllers).
pub fn mark_kustomizations_ready<'a>(
    cp: &ControlPlane,
    ns: &str,
    names: impl IntoIterator<Item = &'a str>,
    head: &str,
) -> Result<()> {
    let revision = format!("main@sha1:{head}");
    let status = serde_json::json!({"status": {
        "lastAppliedRevision": revision,
        "lastAttemptedRevision": revision,
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
            "message": format!("Applied revision: {revision}"),
            "lastTransitionTime": "2026-01-05T10:01:00Z",
        }],
    }});
    for name in names {
        cp.kubectl_run(
            &[
                "patch",
                "-n",
                ns,
                &format!("kustomization/{name}"),
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
    }
    Ok(())
}

/// One timed command line (or several, run one after the other).
pub struct Bench {
    pub id: &'static str,
    pub label: String,
    pub commands: Vec<Command>,
    pub walls: Vec<f64>,
    pub peak_rss_mb: f64,
}

impl Bench {
    pub fn new(id: &'static str, label: &str, commands: Vec<Command>) -> Bench {
        Bench {
            id,
            label: label.to_owned(),
            commands,
            walls: Vec::new(),
            peak_rss_mb: 0.0,
        }
    }

    /// Runs every command once, output discarded; each must exit 0 or 1 (no error). Returns
    /// the wall time of all and the largest peak RSS of one (with its children).
    pub fn run_once(&mut self) -> Result<(f64, f64)> {
        let started = Instant::now();
        let mut peak = 0.0f64;
        for cmd in &mut self.commands {
            // To a file, not a pipe: nothing reads a pipe while the command runs.
            let mut stderr_file = tempfile::tempfile()?;
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr_file.try_clone()?)
                .spawn()
                .with_context(|| format!("({}) starting {:?}", self.id, cmd.get_program()))?;
            let pid = child.id() as libc::pid_t;
            let mut status = 0;
            // SAFETY: rusage is plain data that wait4 fills in; we wait for our own child once.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if waited != pid {
                bail!("wait4: {}", std::io::Error::last_os_error());
            }
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            if !matches!(code, Some(0 | 1)) {
                let mut stderr = String::new();
                use std::io::{Read, Seek};
                let _ = stderr_file.rewind();
                let _ = stderr_file.read_to_string(&mut stderr);
                bail!(
                    "({}) {} exited {code:?}: {}",
                    self.id,
                    self.label,
                    tail(&stderr, 10)
                );
            }
            drop(child);
            peak = peak.max(usage.ru_maxrss as f64 / 1024.0);
        }
        Ok((started.elapsed().as_secs_f64(), peak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert!(parse_number::<u32>("--runs", "x").is_err());
    }
}
