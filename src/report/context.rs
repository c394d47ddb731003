//! `kubectl gitops context`: the resolved context and the server's version.

use std::io::Write;

use k8s_openapi::apimachinery::pkg::version::Info;
use serde::Serialize;

use super::InfoFormat;
use super::LABEL;
use crate::cluster::Target;
use crate::cluster::kubeconfig::{KubeconfigOrigin, NamespaceOrigin};

/// What `context` found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextReport {
    #[serde(flatten)]
    pub target: Target,
    pub server_version: ServerVersion,
}

/// The parts of `GET /version` worth showing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerVersion {
    pub git_version: String,
    pub platform: String,
}

impl From<Info> for ServerVersion {
    fn from(info: Info) -> ServerVersion {
        ServerVersion {
            git_version: info.git_version,
            platform: info.platform,
        }
    }
}

pub fn render_context(
    out: &mut dyn Write,
    report: &ContextReport,
    format: InfoFormat,
) -> std::io::Result<()> {
    if format == InfoFormat::Json {
        return super::write_json(out, "Context", report);
    }
    let t = &report.target;
    let namespace_origin = match t.namespace_origin {
        NamespaceOrigin::Flag => "from -n",
        NamespaceOrigin::Context => "from the context",
        NamespaceOrigin::Default => "default",
        NamespaceOrigin::Pod => "from the pod",
    };
    let kubeconfig = if t.kubeconfig.is_empty() {
        "none (in-cluster service account)".to_owned()
    } else {
        let origin = match t.kubeconfig_origin {
            Some(KubeconfigOrigin::Flag) => " (from --kubeconfig)",
            Some(KubeconfigOrigin::Env) => " (from KUBECONFIG)",
            _ => "",
        };
        let files: Vec<String> = t
            .kubeconfig
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("{}{origin}", files.join(":"))
    };
    let mut rows = vec![
        ("Context", t.context.clone()),
        ("Cluster", t.cluster.clone()),
        (
            "User",
            t.user.clone().unwrap_or_else(|| "(none)".to_owned()),
        ),
        ("Namespace", format!("{} ({namespace_origin})", t.namespace)),
        ("Server", t.server.clone()),
        (
            "Version",
            format!(
                "{} ({})",
                report.server_version.git_version, report.server_version.platform
            ),
        ),
        ("Kubeconfig", kubeconfig),
    ];
    if let Some(imp) = &t.impersonate {
        let groups = if imp.groups.is_empty() {
            String::new()
        } else {
            format!(" (groups: {})", imp.groups.join(", "))
        };
        rows.push(("Impersonate", format!("{}{groups}", imp.user)));
    }
    for (label, value) in rows {
        writeln!(out, "{LABEL}{:<12}{LABEL:#}{value}", format!("{label}:"))?;
    }
    Ok(())
}
