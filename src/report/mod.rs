//! Renderers: they print; nothing else does. Colour is decided once here, from `--color`,
//! `NO_COLOR` and whether the stream is a terminal; renderers write styled text and the stream
//! strips the styles when colour is off.

mod blame;
mod completion;
mod context;
mod diff;
mod fleet;
mod log;
mod revert;
pub mod time;
mod trace;
mod version;
mod watch;

pub use blame::{BlameFormat, TimeFormat, render_blame};
pub use completion::{render_candidates, render_completion_script};
pub use context::{ContextReport, render_context};
pub use diff::{DiffFormat, render_diff, summary_line};
pub use fleet::{
    ContextDrift, ContextStatus, ContextTrace, FleetDriftReport, FleetTraceReport,
    render_fleet_diff, render_fleet_trace,
};
pub use log::Log;
pub use revert::{
    HeldField, Notice, RevertAction, RevertFormat, RevertItem, RevertReport, RevertResult,
    RevertSummary, confirm, render_notices, render_revert, revert_summary_line,
};
pub use trace::{TraceFormat, TraceItem, TraceReport, render_trace};
pub use version::{VersionReport, render_version};
pub use watch::{Cause, DriftEvent, EventCommit, WatchCounts, WatchFormat, render_event};

use std::io::Write;

use anstream::{AutoStream, ColorChoice};
use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::env::Env;

/// The `apiVersion` of every machine-readable document we print.
pub const API_VERSION: &str = "kubectl-gitops.dev/v1alpha1";

/// Styles used across renderers.
pub const LABEL: Style = Style::new().bold();
pub const ERROR: Style = AnsiColor::Red.on_default().bold();
pub const WARNING: Style = AnsiColor::Yellow.on_default().bold();

/// `--color`: when to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorMode {
    #[default]
    Auto,
    Always,
    Never,
}

/// The formats of the informational commands (`context`, `version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InfoFormat {
    Text,
    Json,
}

/// The colour decision for stdout and stderr.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    stdout: ColorChoice,
    stderr: ColorChoice,
}

impl Terminal {
    /// `auto` colours a terminal unless `NO_COLOR` is set; `always` and `never` are absolute.
    pub fn new(mode: ColorMode, env: &Env) -> Terminal {
        let choose = |tty: bool| match mode {
            ColorMode::Always => ColorChoice::Always,
            ColorMode::Never => ColorChoice::Never,
            ColorMode::Auto if tty && !env.no_color => ColorChoice::Always,
            ColorMode::Auto => ColorChoice::Never,
        };
        Terminal {
            stdout: choose(env.stdout_tty),
            stderr: choose(env.stderr_tty),
        }
    }

    pub fn stdout(&self) -> AutoStream<std::io::Stdout> {
        AutoStream::new(std::io::stdout(), self.stdout)
    }

    pub fn stderr(&self) -> AutoStream<std::io::Stderr> {
        AutoStream::new(std::io::stderr(), self.stderr)
    }

    /// Prints `error: <message>` as one line.
    pub fn error_line(&self, err: &mut dyn Write, message: &str) {
        let one_line = crate::text::single_line(message);
        let _ = writeln!(err, "{ERROR}error:{ERROR:#} {one_line}");
    }
}

/// A machine-readable document: `apiVersion`, `kind`, then the fields of `body`.
#[derive(Serialize)]
pub(super) struct Document<'a, T: Serialize> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

impl<'a, T: Serialize> Document<'a, T> {
    pub(super) fn new(kind: &'static str, body: &'a T) -> Document<'a, T> {
        Document {
            api_version: API_VERSION,
            kind,
            body,
        }
    }
}

/// Writes `body` as a YAML document of `kind`.
pub fn write_yaml<T: Serialize>(
    out: &mut dyn Write,
    kind: &'static str,
    body: &T,
) -> std::io::Result<()> {
    let doc = Document {
        api_version: API_VERSION,
        kind,
        body,
    };
    // Through JSON, so that YAML and JSON output carry exactly the same fields.
    let value = serde_json::to_value(&doc).map_err(std::io::Error::other)?;
    let text = serde_saphyr::to_string(&value).map_err(std::io::Error::other)?;
    out.write_all(text.as_bytes())
}

/// Writes `body` as an indented JSON document of `kind`.
pub fn write_json<T: Serialize>(
    out: &mut dyn Write,
    kind: &'static str,
    body: &T,
) -> std::io::Result<()> {
    let doc = Document {
        api_version: API_VERSION,
        kind,
        body,
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
