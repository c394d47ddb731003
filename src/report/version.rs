//! `kubectl gitops version`.

use std::io::Write;

use serde::Serialize;

use super::InfoFormat;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionReport {
    pub version: &'static str,
    /// The Git commit built from; `-dirty` when the tree had uncommitted changes.
    pub commit: &'static str,
}

impl VersionReport {
    /// This binary's version and commit.
    pub fn current() -> VersionReport {
        VersionReport {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("KUBECTL_GITOPS_COMMIT"),
        }
    }
}

pub fn render_version(
    out: &mut dyn Write,
    report: &VersionReport,
    format: InfoFormat,
) -> std::io::Result<()> {
    match format {
        InfoFormat::Json => super::write_json(out, "Version", report),
        InfoFormat::Text => writeln!(
            out,
            "kubectl-gitops v{} (commit {})",
            report.version, report.commit
        ),
    }
}
