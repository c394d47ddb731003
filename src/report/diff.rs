//! `kubectl gitops diff` renderers: unified diff per object, table, JSON/YAML, markdown.

use std::io::Write;

use anstyle::AnsiColor;
use serde_json::Value;

use super::LABEL;
use super::time::format_time;
use crate::drift::{DriftReport, FieldReport, ObjectReport, Status, Why};

/// Output formats of `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Diff,
    Table,
    Json,
    Yaml,
    Markdown,
}

const REMOVED: anstyle::Style = AnsiColor::Red.on_default();
const ADDED: anstyle::Style = AnsiColor::Green.on_default();
const HUNK: anstyle::Style = AnsiColor::Cyan.on_default();

pub fn render_diff(
    out: &mut dyn Write,
    report: &DriftReport,
    format: DiffFormat,
) -> std::io::Result<()> {
    match format {
        DiffFormat::Json => super::write_json(out, "DriftReport", report),
        DiffFormat::Yaml => super::write_yaml(out, "DriftReport", report),
        DiffFormat::Table => table(out, report),
        DiffFormat::Markdown => markdown(out, report),
        DiffFormat::Diff => diffs(out, report),
    }
}

/// One line per object with values left out of the comparison (encrypted in Git), in sync or
/// not: `note: Secret shop/db: .data.password: encrypted in Git: not compared`.
fn notes(out: &mut dyn Write, report: &DriftReport, bullet: &str) -> std::io::Result<()> {
    for item in report.items.iter().filter(|i| !i.not_compared.is_empty()) {
        let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
        for n in &item.not_compared {
            match by_reason.iter_mut().find(|(r, _)| *r == n.reason) {
                Some((_, paths)) => paths.push(&n.path),
                None => by_reason.push((&n.reason, vec![&n.path])),
            }
        }
        for (reason, paths) in by_reason {
            writeln!(
                out,
                "{bullet}note: {}: {}: {reason}",
                item.object,
                paths.join(", ")
            )?;
        }
    }
    Ok(())
}

/// `3 in sync, 1 drifted, 0 missing, 0 orphaned (2 ignored fields)`.
pub fn summary_line(report: &DriftReport) -> String {
    let s = &report.summary;
    let mut line = format!(
        "{} in sync, {} drifted, {} missing, {} orphaned",
        s.in_sync, s.drifted, s.missing, s.orphaned
    );
    if s.no_source > 0 {
        line.push_str(&format!(", {} without source", s.no_source));
    }
    if s.errors > 0 {
        line.push_str(&format!(", {} errors", s.errors));
    }
    if s.ignored_fields > 0 {
        line.push_str(&format!(
            " ({} ignored fields; --show-ignored lists them)",
            s.ignored_fields
        ));
    }
    line
}

pub(super) fn why_text(why: &Why) -> String {
    match why {
        Why::Pending {
            commit,
            author,
            time,
            subject,
        } => format!(
            "pending: {} {author} {} \"{subject}\"",
            &commit[..commit.len().min(7)],
            format_time(*time, 0)
        ),
        Why::Published {
            chart,
            version,
            source,
            installed,
        } => format!(
            "pending: chart {chart} {version} published in {source} (the release has {installed})"
        ),
        Why::OutOfBand {
            manager,
            operation,
            time,
            subresource,
        } => {
            let sub = subresource
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            let at = time
                .as_deref()
                .map(|t| format!(", {t}"))
                .unwrap_or_default();
            format!("out of band: {manager}, {operation}{sub}{at}")
        }
        Why::Unrecorded => "out of band: not recorded in managedFields (a removal?)".to_owned(),
    }
}

/// Why a field is reported: its cause, or, where the offline comparison could not prove the
/// difference, that it may be nothing but defaults the server filled in.
pub(super) fn reason(field: &FieldReport) -> String {
    const SHOWN: usize = 3;
    let unproven = &field.may_be_server_default;
    if unproven.is_empty() {
        return why_text(&field.why);
    }
    let mut named = unproven[..unproven.len().min(SHOWN)].join(", ");
    if unproven.len() > SHOWN {
        named.push_str(&format!(" and {} more", unproven.len() - SHOWN));
    }
    let them = if unproven.len() == 1 { "it" } else { "them" };
    format!(
        "may be a server default; run with --server-side=true to confirm (live sets {named}, Git leaves {them} out)"
    )
}

/// A value as YAML lines (scalars on one line).
fn value_lines(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) if !s.contains('\n') => vec![s.clone()],
        Value::Number(_) | Value::Bool(_) | Value::Null => vec![value.to_string()],
        _ => serde_saphyr::to_string(value)
            .unwrap_or_else(|_| value.to_string())
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

fn header(item: &ObjectReport) -> String {
    let status = item.status.as_str();
    match &item.source {
        Some(s) => format!(
            "{} ({status}) from {} @ {}",
            item.object,
            s.place(),
            &s.commit[..s.commit.len().min(7)]
        ),
        None => format!("{} ({status})", item.object),
    }
}

fn unified(out: &mut dyn Write, item: &ObjectReport, color: bool) -> std::io::Result<()> {
    let (r, a, h, l) = if color {
        (REMOVED, ADDED, HUNK, LABEL)
    } else {
        Default::default()
    };
    writeln!(out, "{l}--- live {}{l:#}", item.object)?;
    match &item.source {
        Some(s) => writeln!(
            out,
            "{l}+++ git  {} @ {} ({}){l:#}",
            s.place(),
            &s.commit[..s.commit.len().min(7)],
            s.repo
        )?,
        None => writeln!(out, "{l}+++ git  (no source){l:#}")?,
    }
    match item.status {
        Status::Missing => writeln!(out, "{h}@@ missing: in Git, not in the cluster @@{h:#}")?,
        Status::Orphaned => writeln!(
            out,
            "{h}@@ orphaned: the source no longer declares this object @@{h:#}"
        )?,
        Status::Error => writeln!(
            out,
            "{h}@@ error: {} @@{h:#}",
            item.error.as_deref().unwrap_or("")
        )?,
        Status::NoSource => writeln!(out, "{h}@@ no source @@{h:#}")?,
        _ => {}
    }
    for field in &item.fields {
        hunk(out, field, r, a, h)?;
    }
    Ok(())
}

fn hunk(
    out: &mut dyn Write,
    field: &FieldReport,
    r: anstyle::Style,
    a: anstyle::Style,
    h: anstyle::Style,
) -> std::io::Result<()> {
    writeln!(out, "{h}@@ {} @@ {}{h:#}", field.path, reason(field))?;
    if let Some(live) = &field.live {
        for line in value_lines(live) {
            writeln!(out, "{r}-{line}{r:#}")?;
        }
    }
    if let Some(git) = &field.git {
        for line in value_lines(git) {
            writeln!(out, "{a}+{line}{a:#}")?;
        }
    }
    Ok(())
}

/// `file:first` for tables, or the file alone when it has no lines in Git.
fn first_line(s: &crate::drift::SourceSummary) -> String {
    match s.lines.0 {
        0 => s.file.clone(),
        n => format!("{}:{n}", s.file),
    }
}

fn changed_by(item: &ObjectReport) -> String {
    let mut who: Vec<String> = Vec::new();
    for f in &item.fields {
        let name = match &f.why {
            _ if !f.may_be_server_default.is_empty() => "server default?".to_owned(),
            Why::Pending { commit, .. } => format!("pending {}", &commit[..commit.len().min(7)]),
            Why::Published { chart, version, .. } => format!("pending {chart} {version}"),
            Why::OutOfBand { manager, .. } => manager.clone(),
            Why::Unrecorded => "unrecorded".to_owned(),
        };
        if !who.contains(&name) {
            who.push(name);
        }
    }
    who.join(", ")
}

/// The columns of `-o table`.
pub(super) const TABLE_HEADER: [&str; 7] = [
    "KIND",
    "NAMESPACE",
    "NAME",
    "STATUS",
    "FIELDS",
    "CHANGED BY",
    "SOURCE",
];

/// One `-o table` row per object.
pub(super) fn table_rows(report: &DriftReport) -> Vec<Vec<String>> {
    report
        .items
        .iter()
        .map(|item| {
            let kind = if item.object.group.is_empty() {
                item.object.kind.clone()
            } else {
                format!("{}.{}", item.object.kind, item.object.group)
            };
            let source = item
                .source
                .as_ref()
                .map(first_line)
                .unwrap_or_else(|| "-".to_owned());
            vec![
                kind,
                item.object
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
                item.object.name.clone(),
                item.status.as_str().to_owned(),
                item.fields.len().to_string(),
                changed_by(item),
                source,
            ]
        })
        .collect()
}

/// Left-aligned columns separated by spaces, like kubectl get.
pub(super) fn write_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> std::io::Result<()> {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header);
    for row in rows {
        table.add_row(row);
    }
    for line in table.to_string().lines() {
        writeln!(out, "{}", line.trim_end().trim_start_matches(' '))?;
    }
    Ok(())
}

fn table(out: &mut dyn Write, report: &DriftReport) -> std::io::Result<()> {
    write_table(out, &TABLE_HEADER, table_rows(report))?;
    notes(out, report, "")?;
    writeln!(out, "{}", summary_line(report))
}

fn markdown(out: &mut dyn Write, report: &DriftReport) -> std::io::Result<()> {
    writeln!(out, "### kubectl gitops diff\n")?;
    markdown_body(out, report)
}

/// The summary, the table of what is not in sync, and a diff of each.
pub(super) fn markdown_body(out: &mut dyn Write, report: &DriftReport) -> std::io::Result<()> {
    writeln!(out, "{}\n", summary_line(report))?;
    if report.items.iter().any(|i| !i.not_compared.is_empty()) {
        notes(out, report, "- ")?;
        writeln!(out)?;
    }
    writeln!(out, "| Object | Status | Fields | Changed by | Source |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for item in report.items.iter().filter(|i| i.status != Status::InSync) {
        let source = item
            .source
            .as_ref()
            .map(|s| format!("`{}`", first_line(s)))
            .unwrap_or_else(|| "-".to_owned());
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            item.object,
            item.status.as_str(),
            item.fields.len(),
            changed_by(item),
            source
        )?;
    }
    for item in report.items.iter().filter(|i| i.status != Status::InSync) {
        writeln!(
            out,
            "\n<details><summary>{}</summary>\n\n```diff",
            header(item)
        )?;
        unified(out, item, false)?;
        writeln!(out, "```\n\n</details>")?;
    }
    Ok(())
}

/// Every object not in sync as a unified diff, then the summary line (`-o diff`).
pub(super) fn diffs(out: &mut dyn Write, report: &DriftReport) -> std::io::Result<()> {
    for item in report.items.iter().filter(|i| i.status != Status::InSync) {
        unified(out, item, true)?;
        writeln!(out)?;
    }
    notes(out, report, "")?;
    writeln!(out, "{}", summary_line(report))
}

#[cfg(test)]
mod golden {
    //! Golden files for every format, colour off, width fixed. Regenerate with
    //! `UPDATE_GOLDEN=1 cargo test --lib report::diff::golden`, never by hand.

    use super::*;
    use crate::drift::{
        DriftReport, FieldReport, ObjectReport, SourceSummary, Status, Verdict, Why,
    };
    use crate::object::ObjectKey;
    use serde_json::json;

    fn key(group: &str, kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    fn source(file: &str, lines: (usize, usize)) -> Option<SourceSummary> {
        Some(SourceSummary {
            repo: "https://git.example.com/acme/deploy".into(),
            file: file.into(),
            lines,
            commit: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into(),
            rule: "Flux Kustomization labels".into(),
        })
    }

    fn report() -> DriftReport {
        let items = vec![
            ObjectReport {
                object: key("apps", "Deployment", "web"),
                status: Status::Drifted,
                verdict: Some(Verdict::DryRun),
                source: source("apps/web.yaml", (1, 30)),
                fields: vec![
                    FieldReport {
                        path: ".spec.replicas".into(),
                        git: Some(json!(2)),
                        live: Some(json!(5)),
                        why: Why::OutOfBand {
                            manager: "kubectl".into(),
                            operation: "Update".into(),
                            time: Some("2026-11-26T07:00:00Z".into()),
                            subresource: Some("scale".into()),
                        },
                        ignored_by: None,
                        may_be_server_default: Vec::new(),
                    },
                    FieldReport {
                        path: ".spec.template.spec.containers[name=web].image".into(),
                        git: Some(json!("nginx:1.28")),
                        live: Some(json!("nginx:1.27")),
                        why: Why::Pending {
                            commit: "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432".into(),
                            author: "Bob Builder".into(),
                            time: 1_764_140_400,
                            subject: "Bump web to 1.28".into(),
                        },
                        ignored_by: None,
                        may_be_server_default: Vec::new(),
                    },
                ],
                ignored: vec![],
                error: None,
                not_compared: Vec::new(),
            },
            ObjectReport {
                object: key("", "Secret", "creds"),
                status: Status::Drifted,
                verdict: Some(Verdict::DryRun),
                source: source("apps/secret.yaml", (1, 8)),
                fields: vec![FieldReport {
                    path: ".data.password".into(),
                    git: Some(json!("(hidden git value)")),
                    live: Some(json!("(hidden live value)")),
                    why: Why::OutOfBand {
                        manager: "kubectl-patch".into(),
                        operation: "Update".into(),
                        time: Some("2026-11-26T08:00:00Z".into()),
                        subresource: None,
                    },
                    ignored_by: None,
                    may_be_server_default: Vec::new(),
                }],
                ignored: vec![],
                error: None,
                not_compared: Vec::new(),
            },
            ObjectReport {
                object: key("", "ConfigMap", "settings"),
                status: Status::InSync,
                verdict: Some(Verdict::Offline),
                source: source("apps/config.yaml", (1, 9)),
                fields: vec![],
                ignored: vec![],
                error: None,
                not_compared: Vec::new(),
            },
            ObjectReport {
                object: key("", "ConfigMap", "gone"),
                status: Status::Missing,
                verdict: Some(Verdict::Offline),
                source: source("apps/config.yaml", (11, 17)),
                fields: vec![],
                ignored: vec![],
                error: None,
                not_compared: Vec::new(),
            },
        ];
        DriftReport::new("auto", items)
    }

    #[test]
    fn every_format_matches_its_golden_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        for (format, file) in [
            (DiffFormat::Diff, "diff.txt"),
            (DiffFormat::Table, "diff-table.txt"),
            (DiffFormat::Json, "diff.json"),
            (DiffFormat::Yaml, "diff.yaml"),
            (DiffFormat::Markdown, "diff.md"),
        ] {
            let mut out = Vec::new();
            // Renderers write styles; the stream strips them when colour is off.
            let mut stream = anstream::StripStream::new(&mut out);
            render_diff(&mut stream, &report(), format).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains('\x1b'), "{file}: colour off");
            let path = dir.join(file);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
                    path.display()
                )
            });
            assert_eq!(
                text, want,
                "{file} differs; if the change is intended, regenerate with UPDATE_GOLDEN=1"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(unproven: &[&str]) -> FieldReport {
        FieldReport {
            path: ".spec.ingress".into(),
            git: Some(json!([{"ports": [{"port": 80}]}])),
            live: Some(json!([{"ports": [{"port": 80, "endPort": 90}]}])),
            why: Why::Unrecorded,
            ignored_by: None,
            may_be_server_default: unproven.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn an_unproven_field_says_it_may_be_a_server_default() {
        let cases = [
            (
                vec![],
                "out of band: not recorded in managedFields (a removal?)".to_owned(),
            ),
            (
                vec![".spec.ingress[0].ports[0].endPort"],
                "may be a server default; run with --server-side=true to confirm \
                 (live sets .spec.ingress[0].ports[0].endPort, Git leaves it out)"
                    .to_owned(),
            ),
            (
                vec![".a", ".b", ".c", ".d", ".e"],
                "may be a server default; run with --server-side=true to confirm \
                 (live sets .a, .b, .c and 2 more, Git leaves them out)"
                    .to_owned(),
            ),
        ];
        for (unproven, want) in cases {
            assert_eq!(reason(&field(&unproven)), want);
        }
        // JSON gains one field, only where there is something to say.
        let json = serde_json::to_value(field(&[".x"])).unwrap();
        assert_eq!(json["mayBeServerDefault"], json!([".x"]));
        let json = serde_json::to_value(field(&[])).unwrap();
        assert!(json.get("mayBeServerDefault").is_none());
        let item = ObjectReport {
            object: crate::object::ObjectKey {
                group: "networking.k8s.io".into(),
                kind: "NetworkPolicy".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
            },
            status: Status::Drifted,
            verdict: None,
            source: None,
            fields: vec![field(&[".x"])],
            ignored: vec![],
            error: None,
            not_compared: Vec::new(),
        };
        assert_eq!(changed_by(&item), "server default?");
    }

    #[test]
    fn values_not_compared_are_noted_in_every_format() {
        let item = ObjectReport {
            object: crate::object::ObjectKey {
                group: String::new(),
                kind: "Secret".into(),
                namespace: Some("shop".into()),
                name: "db".into(),
            },
            status: Status::InSync,
            verdict: None,
            source: None,
            fields: vec![],
            ignored: vec![],
            error: None,
            not_compared: crate::drift::not_compared(vec![
                ".data.password".into(),
                ".stringData.token".into(),
            ]),
        };
        let report = DriftReport::new("auto", vec![item]);
        let line = "note: Secret shop/db: .data.password, .stringData.token: \
                    encrypted in Git: not compared";
        for format in [
            DiffFormat::Diff,
            DiffFormat::Table,
            DiffFormat::Markdown,
            DiffFormat::Json,
            DiffFormat::Yaml,
        ] {
            let mut out = Vec::new();
            render_diff(&mut out, &report, format).unwrap();
            let text = String::from_utf8(out).unwrap();
            let noted = match format {
                DiffFormat::Json | DiffFormat::Yaml => {
                    text.contains("notCompared") && text.contains("encrypted in Git: not compared")
                }
                _ => text.contains(line),
            };
            assert!(noted, "{format:?}:\n{text}");
        }
    }
}
