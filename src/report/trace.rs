//! `kubectl gitops trace`: where each object came from.

use std::io::Write;

use serde::Serialize;

use super::time::format_time;
use super::{LABEL, WARNING};
use crate::git::CommitInfo;
use crate::object::ObjectKey;
use crate::source::Located;

#[derive(Debug, Serialize)]
pub struct TraceReport {
    pub items: Vec<TraceItem>,
}

/// One object: its source, or why it has none.
#[derive(Debug, Serialize)]
pub struct TraceItem {
    pub object: ObjectKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Located>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Output formats of `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    Text,
    Json,
    Yaml,
}

pub fn render_trace(
    out: &mut dyn Write,
    report: &TraceReport,
    format: TraceFormat,
) -> std::io::Result<()> {
    match format {
        TraceFormat::Json => super::write_json(out, "TraceReport", report),
        TraceFormat::Yaml => super::write_yaml(out, "TraceReport", report),
        TraceFormat::Text => {
            for (i, item) in report.items.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                text(out, item)?;
            }
            Ok(())
        }
    }
}

fn commit_line(c: &CommitInfo) -> String {
    format!(
        "{} {} <{}> {} \"{}\"",
        c.id.short(),
        c.author_name,
        c.author_email,
        format_time(c.time, c.offset_seconds),
        c.subject
    )
}

fn text(out: &mut dyn Write, item: &TraceItem) -> std::io::Result<()> {
    writeln!(out, "{LABEL}{}{LABEL:#}", item.object)?;
    let Some(s) = &item.source else {
        let reason = item.error.as_deref().unwrap_or("no source");
        return writeln!(out, "  {WARNING}no source:{WARNING:#} {reason}");
    };
    let mut row =
        |label: &str, value: String| writeln!(out, "  {:<13}{value}", format!("{label}:"));
    let repo_kind = if s.local_checkout {
        " (local checkout)"
    } else {
        ""
    };
    row("Repository", format!("{}{repo_kind}", s.repo))?;
    // A template in a chart archive has no lines in Git.
    match (&s.dependency, s.lines) {
        (Some(d), _) => row(
            "File",
            format!("{} in the archive of dependency {}", d.template, d.chart),
        )?,
        (None, (0, 0)) => row("File", s.file.clone())?,
        (None, (a, b)) => row("File", format!("{}:{a}-{b}", s.file))?,
    }
    row("Render root", s.render_root.clone())?;
    match &s.applied_commit {
        Some(c) => row("Applied", commit_line(c))?,
        None => row(
            "Applied",
            "unknown (nothing records the applied commit)".into(),
        )?,
    }
    if let Some(c) = &s.last_change {
        row("Last change", commit_line(c))?;
    }
    if let (Some(r), Some(t)) = (&s.tracked_ref, &s.tracked_commit) {
        let short = &t[..t.len().min(7)];
        let moved = match (s.commits_since_applied, s.file_changed_since_applied) {
            (Some(0), _) => ", at the applied commit".to_owned(),
            (Some(n), changed) => {
                let commits = if n == 1 { "commit" } else { "commits" };
                let file = match (changed == Some(true), s.helm.is_some() || s.chart.is_some()) {
                    (true, false) => "this file changed",
                    (false, false) => "this file did not change",
                    (true, true) if s.chart.is_some() => "its chart or values files changed",
                    (false, true) if s.chart.is_some() => {
                        "its chart and values files did not change"
                    }
                    (true, true) => "its chart, values files or HelmRelease changed",
                    (false, true) => "its chart, values files and HelmRelease did not change",
                };
                format!(", {n} {commits} past the applied one; {file}")
            }
            (None, _) => String::new(),
        };
        row("Tracking", format!("{r} at {short}{moved}"))?;
    }
    match &s.reconciler {
        Some(r) => {
            let status = r
                .status
                .as_deref()
                .map(|st| format!(", Ready: {st}"))
                .unwrap_or_default();
            let status = if r.kind == "Application" {
                r.status
                    .as_deref()
                    .map(|st| format!(", {st}"))
                    .unwrap_or_default()
            } else {
                status
            };
            let suspended = if r.suspended { ", suspended" } else { "" };
            row("Reconciler", format!("{}{status}{suspended}", r.display()))?;
        }
        None => row("Reconciler", "none (kubectl apply or a pipeline)".into())?,
    }
    if let Some(h) = &s.helm {
        helm_rows(&mut row, h)?;
    }
    if let Some(c) = &s.chart {
        row(
            "Release",
            format!("{}/{} (helm template by Argo CD)", c.namespace, c.release),
        )?;
        let chart = match (
            &c.chart_url,
            &c.version_constraint,
            &c.desired_chart_version,
        ) {
            (Some(url), Some(constraint), Some(desired)) => format!(
                "{} {} from {url}; version {constraint:?} picks {desired} there now",
                c.chart, c.chart_version
            ),
            _ => format!("{} {}, path {}", c.chart, c.chart_version, c.chart_path),
        };
        row("Chart", chart)?;
        row("Values", values_line(&c.values, "helm.values"))?;
        for v in &c.values_repos {
            let short = |c: &str| c[..c.len().min(7)].to_owned();
            row(
                "Values repo",
                format!(
                    "{} (spec.sources[{}], {}): $ref files read at {}, tip {}",
                    v.repo,
                    v.source,
                    v.tracked_ref,
                    v.synced_commit
                        .as_deref()
                        .map_or_else(|| "the tip".to_owned(), short),
                    short(&v.tracked_commit)
                ),
            )?;
        }
    }
    if let Some(d) = &s.dependency {
        let alias = d
            .alias
            .as_ref()
            .map(|a| format!(" (as {a})"))
            .unwrap_or_default();
        let applied = d
            .applied_label
            .as_ref()
            .map(|l| format!("; its helm.sh/chart label is {l}"))
            .unwrap_or_default();
        row(
            "Dependency",
            format!(
                "{}{alias} from {}; version {:?} picks {} there now{applied}",
                d.chart, d.url, d.version_constraint, d.desired_version
            ),
        )?;
    }
    row("Found by", s.rule.describe().to_owned())
}

/// The values sources in order, `inline` naming the reconciler's own values (never a value).
fn values_line(values: &[crate::source::ValuesSource], inline: &str) -> String {
    let values: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let what = match (v.kind.as_str(), &v.key) {
                ("values", _) => inline.to_owned(),
                (kind, Some(key)) => format!("{kind} {} key {key}", v.name),
                (kind, None) => format!("{kind} {}", v.name),
            };
            format!("{}. {what}", i + 1)
        })
        .collect();
    if values.is_empty() {
        "the chart's defaults (later wins)".to_owned()
    } else {
        format!("{} (later wins)", values.join(", "))
    }
}

/// The release, chart and values sources of a HelmRelease's object (never a value).
fn helm_rows(
    row: &mut dyn FnMut(&str, String) -> std::io::Result<()>,
    h: &crate::source::HelmTrace,
) -> std::io::Result<()> {
    row(
        "Release",
        format!(
            "{}/{} revision {} ({})",
            h.namespace, h.release, h.revision, h.status
        ),
    )?;
    let chart = match (
        &h.chart_url,
        &h.version_constraint,
        &h.desired_chart_version,
    ) {
        (Some(url), Some(constraint), Some(desired)) => format!(
            "{} {} from {} at {url}; version {constraint:?} picks {desired} there now",
            h.chart, h.chart_version, h.chart_source
        ),
        _ => format!(
            "{} {} from {}, path {}",
            h.chart, h.chart_version, h.chart_source, h.chart_path
        ),
    };
    row("Chart", chart)?;
    let inline = if h.values_from_git {
        "spec.values (as in Git)"
    } else {
        "spec.values (as in the cluster)"
    };
    row("Values", values_line(&h.values, inline))?;
    if !h.post_renderers.is_empty() {
        let listed: Vec<String> = h
            .post_renderers
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {r}", i + 1))
            .collect();
        row("Post-render", format!("{} (in order)", listed.join(", ")))?;
    }
    match (&h.helm_release_file, h.helm_release_lines) {
        (Some(file), Some((a, b))) => row(
            "HelmRelease",
            format!("{} in {file}:{a}-{b}", h.helm_release),
        ),
        _ => row(
            "HelmRelease",
            format!(
                "{}, not found in Git: {}",
                h.helm_release,
                h.helm_release_not_found.as_deref().unwrap_or("unknown")
            ),
        ),
    }
}
