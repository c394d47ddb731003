//! `kubectl gitops blame`: the live object, each line prefixed with its origin.

use std::io::Write;

use anstyle::AnsiColor;
use serde::Serialize;

use super::time::{format_time, relative};
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
            ..
        } => (
            format!(
                "{} {}{} {file}:{line}",
                &commit[..commit.len().min(7)],
                author,
                when(Some(*t), *offset_seconds, None, time, now)
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
        Origin::ServerDefault => ("(server default)".to_owned(), DEFAULTED),
    }
}

/// `2026-11-26T07:00:00Z` → Unix seconds (managedFields times are UTC, second precision).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, clock) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (c.next()??, c.next()??, c.next()??);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_format_time() {
        let t = parse_rfc3339("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(t, 1_700_000_000);
        assert_eq!(format_time(t, 0), "2023-11-14 22:13 +0000");
        assert_eq!(parse_rfc3339("nonsense"), None);
    }
}
