//! `kubectl gitops blame`: the live object, each line prefixed with its origin.

use std::io::Write;

use anstyle::AnsiColor;
use serde::Serialize;

use super::time::{format_time, parse_rfc3339, relative};
use crate::blame::{BlameRecord, Origin};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BlameFormat {
    Text,
    Json,
}

/// `--time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFormat {
    Relative,
    Full,
    None,
}

const DRIFT: anstyle::Style = AnsiColor::Red.on_default();
const DEFAULTED: anstyle::Style = AnsiColor::BrightBlack.on_default();

/// One JSON record per line, with the document's apiVersion and kind on each.
#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    record: &'a BlameRecord,
}

pub fn render_blame(
    out: &mut dyn Write,
    records: &[BlameRecord],
    format: BlameFormat,
    time: TimeFormat,
    now: i64,
) -> std::io::Result<()> {
    if format == BlameFormat::Json {
        for record in records {
            let line = Record {
                api_version: super::API_VERSION,
                kind: "BlameLine",
                record,
            };
            serde_json::to_writer(&mut *out, &line)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let prefixes: Vec<(String, anstyle::Style)> = records
        .iter()
        .map(|r| prefix(&r.origin, time, now))
        .collect();
    let width = prefixes
        .iter()
        .map(|(p, _)| p.chars().count())
        .max()
        .unwrap_or(0);
    for (record, (prefix, style)) in records.iter().zip(prefixes) {
        writeln!(out, "{style}{prefix:<width$}{style:#} | {}", record.text)?;
    }
    Ok(())
}

fn when(unix: Option<i64>, offset: i32, text: Option<&str>, time: TimeFormat, now: i64) -> String {
    match (time, unix) {
        (TimeFormat::None, _) => String::new(),
        (TimeFormat::Relative, Some(t)) => format!(" {}", relative(t, now)),
        (TimeFormat::Full, Some(t)) => format!(" {}", format_time(t, offset)),
        (_, None) => text.map(|t| format!(" {t}")).unwrap_or_default(),
    }
}

fn prefix(origin: &Origin, time: TimeFormat, now: i64) -> (String, anstyle::Style) {
    match origin {
        Origin::Git {
            commit,
            author,
            time: t,
            offset_seconds,
            file,
            line,
            repo,
            ..
        } => (
            format!(
                "{} {}{} {file}:{line}{}",
                &commit[..commit.len().min(7)],
                author,
                when(Some(*t), *offset_seconds, None, time, now),
                repo.as_ref()
                    .map(|r| format!(" in {r}"))
                    .unwrap_or_default()
            ),
            anstyle::Style::new(),
        ),
        Origin::Drift {
            manager,
            operation,
            time: t,
            subresource,
        } => {
            let unix = t.as_deref().and_then(parse_rfc3339);
            let sub = subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            (
                format!(
                    "drift: {manager} {operation}{sub}{}",
                    when(unix, 0, t.as_deref(), time, now)
                ),
                DRIFT,
            )
        }
        Origin::Values {
            source,
            values_path,
        } => (
            format!("values: {source} ({values_path})"),
            anstyle::Style::new(),
        ),
        Origin::Chart { chart, file } => (format!("{chart} {file}"), anstyle::Style::new()),
        Origin::ServerDefault => ("(server default)".to_owned(), DEFAULTED),
    }
}
