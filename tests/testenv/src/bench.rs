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

/// Runs every bench `runs` times, interleaved (a, b, c, a, b, c, ...), calling `before` ahead of
/// each run (to empty a cache), and records its wall time and peak RSS.
pub fn run_interleaved(
    benches: &mut [Bench],
    runs: usize,
    mut before: impl FnMut(&Bench),
) -> Result<()> {
    for run in 0..runs {
        for bench in benches.iter_mut() {
            before(bench);
            let (wall, rss) = bench.run_once()?;
            eprintln!("          run {}/{runs} ({}) {wall:.2}s", run + 1, bench.id);
            bench.walls.push(wall);
            bench.peak_rss_mb = bench.peak_rss_mb.max(rss);
        }
    }
    Ok(())
}

/// The median wall time of bench `id`, if it ran.
pub fn median_of(benches: &[Bench], id: &str) -> Option<f64> {
    benches
        .iter()
        .find(|b| b.id == id)
        .map(|b| median(&b.walls))
}

/// Prints the machine line and one row per bench: median, peak RSS, command.
pub fn print_table(benches: &[Bench]) {
    println!(
        "machine: {} cores, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!();
    println!("{:<4} {:>8} {:>10}  command", "", "median", "peak RSS");
    for b in benches {
        println!(
            "({}) {:>7.2}s {:>7.0} MB  {}",
            b.id,
            median(&b.walls),
            b.peak_rss_mb,
            b.label
        );
    }
    println!();
}

/// The objects a `diff -o json` report calls anything but in sync, as `Kind/name`.
pub fn not_in_sync(report: &serde_json::Value) -> std::collections::BTreeSet<String> {
    report["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] != "in-sync")
        .map(|i| {
            format!(
                "{}/{}",
                i["object"]["kind"].as_str().unwrap_or_default(),
                i["object"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
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
