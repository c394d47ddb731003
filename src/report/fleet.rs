//! Fleet reports: `diff` and `trace` over several kube contexts. The same per-context reports
//! as a single run, grouped by context, with a cluster × status summary where the format has
//! room for one.

use std::io::Write;

use serde::{Serialize, Serializer};

use super::LABEL;
use super::diff::{DiffFormat, TABLE_HEADER, diffs, markdown_body, summary_line, table_rows};
use super::trace::{TraceFormat, TraceReport, render_trace};
use crate::drift::DriftReport;

/// How one context compares with Git, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContextStatus {
    InSync,
    /// Something drifted, is missing or orphaned.
    Drifted,
    /// The context could not be evaluated (its report is absent), or part of it could not.
    Error,
}

impl ContextStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextStatus::InSync => "in-sync",
            ContextStatus::Drifted => "drifted",
            ContextStatus::Error => "error",
        }
    }
}

/// One context of a fleet `diff`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextDrift {
    pub context: String,
    /// The API server, when the context could be connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub status: ContextStatus,
    /// Why the context could not be evaluated, or not all of it (said on stderr too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The context's `DriftReport`, as a single run would give it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_drift_report"
    )]
    pub report: Option<DriftReport>,
}

impl ContextDrift {
    /// A context evaluated; `failed`: some objects or kinds could not be (said on stderr).
    pub fn evaluated(
        context: String,
        server: String,
        report: DriftReport,
        failed: bool,
    ) -> ContextDrift {
        let status = if failed || report.summary.errors > 0 {
            ContextStatus::Error
        } else if report.has_drift() {
            ContextStatus::Drifted
        } else {
            ContextStatus::InSync
        };
        ContextDrift {
            context,
            server: Some(server),
            status,
            error: failed
                .then(|| "some objects or kinds could not be evaluated (see stderr)".to_owned()),
            report: Some(report),
        }
    }

    /// A context that could not be evaluated at all: unreachable, unknown, forbidden.
    pub fn failed(context: String, error: String) -> ContextDrift {
        ContextDrift {
            context,
            server: None,
            status: ContextStatus::Error,
            error: Some(error),
            report: None,
        }
    }
}

fn as_drift_report<S: Serializer>(report: &Option<DriftReport>, s: S) -> Result<S::Ok, S::Error> {
    match report {
        Some(report) => super::Document::new("DriftReport", report).serialize(s),
        None => s.serialize_none(),
    }
}

/// How many contexts are in each state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    pub contexts: usize,
    pub in_sync: usize,
    pub drifted: usize,
    pub failed: usize,
}

/// The whole fleet `diff` answer: `kind: FleetDriftReport`, one `DriftReport` per context.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetDriftReport {
    pub server_side: String,
    pub summary: FleetSummary,
    pub contexts: Vec<ContextDrift>,
}

impl FleetDriftReport {
    pub fn new(server_side: &str, contexts: Vec<ContextDrift>) -> FleetDriftReport {
        let mut summary = FleetSummary {
            contexts: contexts.len(),
            ..FleetSummary::default()
        };
        for c in &contexts {
            *match c.status {
                ContextStatus::InSync => &mut summary.in_sync,
                ContextStatus::Drifted => &mut summary.drifted,
                ContextStatus::Error => &mut summary.failed,
            } += 1;
        }
        FleetDriftReport {
            server_side: server_side.to_owned(),
            summary,
            contexts,
        }
    }
}

/// `fleet: 3 contexts: 1 in sync, 1 drifted, 1 failed`.
pub fn fleet_line(summary: &FleetSummary) -> String {
    format!(
        "fleet: {} contexts: {} in sync, {} drifted, {} failed",
        summary.contexts, summary.in_sync, summary.drifted, summary.failed
    )
}

fn heading(c: &ContextDrift) -> String {
    match &c.server {
        Some(server) => format!("context {} ({server})", c.context),
        None => format!("context {}", c.context),
    }
}

pub fn render_fleet_diff(
    out: &mut dyn Write,
    report: &FleetDriftReport,
    format: DiffFormat,
) -> std::io::Result<()> {
    match format {
        DiffFormat::Json => super::write_json(out, "FleetDriftReport", report),
        DiffFormat::Yaml => super::write_yaml(out, "FleetDriftReport", report),
        DiffFormat::Diff => {
            for c in &report.contexts {
                writeln!(out, "{LABEL}=== {} ==={LABEL:#}", heading(c))?;
                match &c.report {
                    Some(r) => diffs(out, r)?,
                    None => writeln!(out, "error: {}", c.error.as_deref().unwrap_or(""))?,
                }
                writeln!(out)?;
            }
            writeln!(out, "{}", fleet_line(&report.summary))
        }
        DiffFormat::Table => {
            let mut header = vec!["CONTEXT"];
            header.extend(TABLE_HEADER);
            let mut rows = Vec::new();
            for c in &report.contexts {
                match &c.report {
                    Some(r) => rows.extend(table_rows(r).into_iter().map(|row| {
                        let mut full = vec![c.context.clone()];
                        full.extend(row);
                        full
                    })),
                    None => rows.push(vec![
                        c.context.clone(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "error".into(),
                        "-".into(),
                        "-".into(),
                        c.error.clone().unwrap_or_default(),
                    ]),
                }
            }
            super::diff::write_table(out, &header, rows)?;
            for c in &report.contexts {
                match &c.report {
                    Some(r) => writeln!(out, "{}: {}", c.context, summary_line(r))?,
                    None => writeln!(out, "{}: error", c.context)?,
                }
            }
            writeln!(out, "{}", fleet_line(&report.summary))
        }
        DiffFormat::Markdown => {
            writeln!(
                out,
                "### kubectl gitops diff: {} contexts\n",
                report.summary.contexts
            )?;
            writeln!(out, "{}\n", fleet_line(&report.summary))?;
            writeln!(
                out,
                "| Context | Status | In sync | Drifted | Missing | Orphaned | Errors |"
            )?;
            writeln!(out, "|---|---|---|---|---|---|---|")?;
            for c in &report.contexts {
                match &c.report {
                    Some(r) => writeln!(
                        out,
                        "| `{}` | {} | {} | {} | {} | {} | {} |",
                        c.context,
                        c.status.as_str(),
                        r.summary.in_sync,
                        r.summary.drifted,
                        r.summary.missing,
                        r.summary.orphaned,
                        r.summary.errors
                    )?,
                    None => writeln!(
                        out,
                        "| `{}` | error | - | - | - | - | {} |",
                        c.context,
                        markdown_cell(c.error.as_deref().unwrap_or(""))
                    )?,
                }
            }
            for c in &report.contexts {
                writeln!(out, "\n#### {}\n", heading(c))?;
                match &c.report {
                    Some(r) => markdown_body(out, r)?,
                    None => writeln!(
                        out,
                        "error: {}",
                        markdown_cell(c.error.as_deref().unwrap_or(""))
                    )?,
                }
            }
            Ok(())
        }
    }
}

/// Text safe inside a markdown table cell.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// One context of a fleet `trace`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextTrace {
    pub context: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub report: TraceReport,
}

/// `kind: FleetTraceReport`: one trace per context.
#[derive(Debug, Serialize)]
pub struct FleetTraceReport {
    pub contexts: Vec<ContextTrace>,
}

pub fn render_fleet_trace(
    out: &mut dyn Write,
    report: &FleetTraceReport,
    format: TraceFormat,
) -> std::io::Result<()> {
    match format {
        TraceFormat::Json => super::write_json(out, "FleetTraceReport", report),
        TraceFormat::Yaml => super::write_yaml(out, "FleetTraceReport", report),
        TraceFormat::Text => {
            for (i, c) in report.contexts.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                let heading = match &c.server {
                    Some(server) => format!("context {} ({server})", c.context),
                    None => format!("context {}", c.context),
                };
                writeln!(out, "{LABEL}=== {heading} ==={LABEL:#}")?;
                match &c.error {
                    Some(e) if c.report.items.is_empty() => writeln!(out, "error: {e}")?,
                    _ => render_trace(out, &c.report, format)?,
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{ObjectReport, Status};
    use crate::object::ObjectKey;

    fn report(status: Status) -> DriftReport {
        DriftReport::new(
            "auto",
            vec![ObjectReport {
                object: ObjectKey {
                    group: String::new(),
                    kind: "ConfigMap".into(),
                    namespace: Some("shop".into()),
                    name: "settings".into(),
                },
                status,
                verdict: None,
                source: None,
                fields: vec![],
                ignored: vec![],
                error: None,
                not_compared: vec![],
            }],
        )
    }

    fn fleet() -> FleetDriftReport {
        FleetDriftReport::new(
            "auto",
            vec![
                ContextDrift::evaluated(
                    "staging".into(),
                    "https://staging:6443".into(),
                    report(Status::InSync),
                    false,
                ),
                ContextDrift::evaluated(
                    "prod".into(),
                    "https://prod:6443".into(),
                    report(Status::Drifted),
                    false,
                ),
                ContextDrift::failed("dr".into(), "cannot connect | refused".into()),
            ],
        )
    }

    fn render(format: DiffFormat) -> String {
        let mut out = Vec::new();
        let mut stream = anstream::StripStream::new(&mut out);
        render_fleet_diff(&mut stream, &fleet(), format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_summary_counts_contexts_by_state() {
        assert_eq!(
            fleet().summary,
            FleetSummary {
                contexts: 3,
                in_sync: 1,
                drifted: 1,
                failed: 1
            }
        );
    }

    #[test]
    fn json_holds_one_drift_report_per_context() {
        let json: serde_json::Value = serde_json::from_str(&render(DiffFormat::Json)).unwrap();
        assert_eq!(json["kind"], "FleetDriftReport");
        let contexts = json["contexts"].as_array().unwrap();
        assert_eq!(contexts.len(), 3);
        assert_eq!(contexts[1]["context"], "prod");
        assert_eq!(contexts[1]["status"], "drifted");
        assert_eq!(contexts[1]["report"]["kind"], "DriftReport");
        assert_eq!(contexts[1]["report"]["summary"]["drifted"], 1);
        assert_eq!(contexts[2]["status"], "error");
        assert!(contexts[2].get("report").is_none());
        assert_eq!(contexts[2]["error"], "cannot connect | refused");
        // YAML carries the same fields.
        let yaml: serde_json::Value = serde_saphyr::from_str(&render(DiffFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
    }

    #[test]
    fn table_and_markdown_name_each_context() {
        let table = render(DiffFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CONTEXT"), "{table}");
        assert!(lines[1].starts_with("staging ") && lines[1].contains("in-sync"));
        assert!(lines[2].starts_with("prod ") && lines[2].contains("drifted"));
        assert!(lines[3].starts_with("dr ") && lines[3].contains("cannot connect"));
        assert!(table.ends_with("fleet: 3 contexts: 1 in sync, 1 drifted, 1 failed\n"));

        let md = render(DiffFormat::Markdown);
        assert!(
            md.contains("| `prod` | drifted | 0 | 1 | 0 | 0 | 0 |"),
            "{md}"
        );
        assert!(md.contains("| `dr` | error | - | - | - | - | cannot connect \\| refused |"));
        let summary_at = md.find("| Context |").unwrap();
        let details_at = md.find("#### context staging").unwrap();
        assert!(summary_at < details_at, "the summary table comes first");

        let text = render(DiffFormat::Diff);
        assert!(
            text.contains("=== context prod (https://prod:6443) ==="),
            "{text}"
        );
        assert!(text.contains("=== context dr ===\nerror: cannot connect | refused"));
    }
}
