//! What the benchmark binaries (`src/bin/bench-*.rs`) share: medians, rounding, the load
//! average they print beside their figures, their flag parsing, and Flux's status.

use anyhow::{Context, Result};

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
