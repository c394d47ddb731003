//! `kubectl gitops revert` renderers: the confirmation prompt, the warnings about reconcilers,
//! and the result of each object with a summary (text), or a `RevertReport` (JSON/YAML).

use std::io::{BufRead, Write};

use anstyle::AnsiColor;
use serde::Serialize;

use super::{LABEL, WARNING};
use crate::drift::{FieldReport, SourceSummary};
use crate::object::ObjectKey;
use crate::source::Reconciler;

/// Output formats of `revert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RevertFormat {
    Text,
    Json,
    Yaml,
}

/// How one object ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertResult {
    /// Put back the way Git says (or, with `--dry-run`, the server accepted every step).
    Reverted,
    /// Nothing to write: already as Git says, or only fields that are left alone differ.
    Unchanged,
    /// Changed by someone else since it was read: what they wrote is kept.
    Conflict,
    /// A request failed (forbidden, invalid) or the object could not be evaluated.
    Failed,
    /// Not something revert does: no source, or Git no longer declares it (revert never
    /// deletes).
    Skipped,
}

impl RevertResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RevertResult::Reverted => "reverted",
            RevertResult::Unchanged => "unchanged",
            RevertResult::Conflict => "conflict",
            RevertResult::Failed => "failed",
            RevertResult::Skipped => "skipped",
        }
    }

    fn style(self) -> anstyle::Style {
        match self {
            RevertResult::Reverted => AnsiColor::Green.on_default().bold(),
            RevertResult::Unchanged => anstyle::Style::new(),
            RevertResult::Conflict | RevertResult::Skipped => WARNING,
            RevertResult::Failed => super::ERROR,
        }
    }
}

/// What was written for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertAction {
    /// Server-side apply of desired (force), then a JSON patch removing out-of-band fields.
    Apply,
    /// Server-side apply of desired to an object that does not exist: created again.
    Create,
    /// No write.
    None,
}

/// A drifted field revert leaves as it is, because a controller that is part of the cluster
/// owns it (an HorizontalPodAutoscaler's replicas), or an ignore rule names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldField {
    pub path: String,
    /// The controller that owns it; None when an ignore rule holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_by: Option<String>,
}

/// One object's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertItem {
    pub object: ObjectKey,
    pub result: RevertResult,
    pub action: RevertAction,
    /// The field manager the object was (or would be) applied as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSummary>,
    /// The fields put back to Git's values (Secret values masked).
    pub fields: Vec<FieldReport>,
    /// Fields Git does not declare that only out-of-band managers owned: removed.
    pub removed: Vec<String>,
    /// Drifted fields left as they are, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciler: Option<Reconciler>,
    /// Why it ended this way, in one line (never a Secret value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Counts per result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RevertSummary {
    pub reverted: usize,
    pub unchanged: usize,
    pub conflict: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The whole `revert` answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertReport {
    /// Every write was sent with `dryRun=All`: nothing was written.
    pub dry_run: bool,
    pub summary: RevertSummary,
    pub items: Vec<RevertItem>,
}

impl RevertReport {
    pub fn new(dry_run: bool, items: Vec<RevertItem>) -> RevertReport {
        let mut summary = RevertSummary::default();
        for item in &items {
            *match item.result {
                RevertResult::Reverted => &mut summary.reverted,
                RevertResult::Unchanged => &mut summary.unchanged,
                RevertResult::Conflict => &mut summary.conflict,
                RevertResult::Failed => &mut summary.failed,
                RevertResult::Skipped => &mut summary.skipped,
            } += 1;
        }
        RevertReport {
            dry_run,
            summary,
            items,
        }
    }

    /// Whether every object was reverted or had nothing to revert (exit 0).
    pub fn all_good(&self) -> bool {
        self.summary.conflict + self.summary.failed + self.summary.skipped == 0
    }
}

pub fn render_revert(
    out: &mut dyn Write,
    report: &RevertReport,
    format: RevertFormat,
) -> std::io::Result<()> {
    match format {
        RevertFormat::Json => super::write_json(out, "RevertReport", report),
        RevertFormat::Yaml => super::write_yaml(out, "RevertReport", report),
        RevertFormat::Text => {
            for item in &report.items {
                writeln!(out, "{}", item_line(item, report.dry_run))?;
            }
            writeln!(out, "{}", revert_summary_line(report))
        }
    }
}

/// `2 reverted, 1 unchanged, 1 conflict, 0 failed, 0 skipped`.
pub fn revert_summary_line(report: &RevertReport) -> String {
    let s = &report.summary;
    let mut line = format!(
        "{} reverted, {} unchanged, {} conflict, {} failed, {} skipped",
        s.reverted, s.unchanged, s.conflict, s.failed, s.skipped
    );
    if report.dry_run {
        line.push_str(" (dry run: nothing was written)");
    }
    line
}

fn item_line(item: &RevertItem, dry_run: bool) -> String {
    let style = item.result.style();
    let result = match (item.result, dry_run) {
        (RevertResult::Reverted, true) => "would be reverted",
        (result, _) => result.as_str(),
    };
    let mut parts: Vec<String> = Vec::new();
    let manager = item.field_manager.as_deref().unwrap_or("kubectl-gitops");
    match (item.result, item.action) {
        (RevertResult::Reverted, RevertAction::Create) => {
            parts.push(format!("created again as {manager}"));
        }
        (RevertResult::Reverted, RevertAction::Apply) => {
            let fields: Vec<&str> = item.fields.iter().map(|f| f.path.as_str()).collect();
            if !fields.is_empty() {
                parts.push(format!("applied as {manager}: {}", fields.join(", ")));
            }
            if !item.removed.is_empty() {
                parts.push(format!("removed {}", item.removed.join(", ")));
            }
        }
        _ => {}
    }
    if let Some(message) = &item.message {
        parts.push(message.clone());
    }
    for held in &item.held {
        parts.push(match (&held.manager, &held.ignored_by) {
            (Some(m), _) => format!(
                "left {} to {m} (a controller owns it, not an out-of-band change)",
                held.path
            ),
            (None, Some(rule)) => format!("left {} as it is (ignored by {rule})", held.path),
            (None, None) => format!("left {} as it is", held.path),
        });
    }
    let detail = if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    };
    format!("{} {style}{result}{style:#}{detail}", item.object)
}

/// A warning or a note shown before the prompt (on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Warning(String),
    Note(String),
}

pub fn render_notices(err: &mut dyn Write, notices: &[Notice]) -> std::io::Result<()> {
    for notice in notices {
        match notice {
            Notice::Warning(text) => writeln!(err, "{WARNING}warning:{WARNING:#} {text}")?,
            Notice::Note(text) => writeln!(err, "{LABEL}note:{LABEL:#} {text}")?,
        }
    }
    Ok(())
}

/// Asks `question` on `err` and reads the answer from `input`: yes only for `y` or `yes`.
/// End of input is no.
pub fn confirm(
    input: &mut dyn BufRead,
    err: &mut dyn Write,
    question: &str,
) -> std::io::Result<bool> {
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        writeln!(err)?;
        return Ok(false);
    }
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::Why;
    use serde_json::json;

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: String::new(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    fn item(name: &str, result: RevertResult, action: RevertAction) -> RevertItem {
        RevertItem {
            object: key("ConfigMap", name),
            result,
            action,
            field_manager: Some("kustomize-controller".into()),
            source: None,
            fields: vec![],
            removed: vec![],
            held: vec![],
            reconciler: None,
            message: None,
        }
    }

    #[test]
    fn text_names_each_object_and_counts_results() {
        let mut applied = item("a", RevertResult::Reverted, RevertAction::Apply);
        applied.fields.push(FieldReport {
            path: ".data.key".into(),
            git: Some(json!("v")),
            live: Some(json!("changed")),
            why: Why::Unrecorded,
            ignored_by: None,
            may_be_server_default: Vec::new(),
        });
        applied.removed.push(".metadata.labels.team".into());
        let mut held = item("b", RevertResult::Unchanged, RevertAction::None);
        held.held.push(HeldField {
            path: ".spec.replicas".into(),
            manager: Some("kube-controller-manager".into()),
            ignored_by: None,
        });
        let mut conflict = item("c", RevertResult::Conflict, RevertAction::Apply);
        conflict.message = Some("changed since it was read; nothing written".into());
        let created = item("d", RevertResult::Reverted, RevertAction::Create);
        let report = RevertReport::new(false, vec![applied, held, conflict, created]);
        let mut out = Vec::new();
        render_revert(
            &mut anstream::StripStream::new(&mut out),
            &report,
            RevertFormat::Text,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ConfigMap shop/a reverted: applied as kustomize-controller: .data.key; removed .metadata.labels.team\n\
             ConfigMap shop/b unchanged: left .spec.replicas to kube-controller-manager (a controller owns it, not an out-of-band change)\n\
             ConfigMap shop/c conflict: changed since it was read; nothing written\n\
             ConfigMap shop/d reverted: created again as kustomize-controller\n\
             2 reverted, 1 unchanged, 1 conflict, 0 failed, 0 skipped\n"
        );
        assert!(!report.all_good());
        let dry = RevertReport::new(
            true,
            vec![item("a", RevertResult::Reverted, RevertAction::Create)],
        );
        assert!(dry.all_good());
        assert!(revert_summary_line(&dry).ends_with("(dry run: nothing was written)"));
        assert!(item_line(&dry.items[0], true).contains("would be reverted"));
    }

    #[test]
    fn json_carries_kind_and_results() {
        let report = RevertReport::new(
            true,
            vec![item("a", RevertResult::Skipped, RevertAction::None)],
        );
        let mut out = Vec::new();
        render_revert(&mut out, &report, RevertFormat::Json).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["kind"], "RevertReport");
        assert_eq!(doc["apiVersion"], crate::report::API_VERSION);
        assert_eq!(doc["dryRun"], true);
        assert_eq!(doc["summary"]["skipped"], 1);
        assert_eq!(doc["items"][0]["result"], "skipped");
        assert_eq!(doc["items"][0]["action"], "none");
    }

    #[test]
    fn only_yes_confirms() {
        for (input, want) in [
            ("y\n", true),
            ("YES\n", true),
            (" yes \n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
            ("yep\n", false),
        ] {
            let mut err = Vec::new();
            let got = confirm(&mut input.as_bytes(), &mut err, "Revert 2 objects?").unwrap();
            assert_eq!(got, want, "{input:?}");
            assert!(
                String::from_utf8(err)
                    .unwrap()
                    .starts_with("Revert 2 objects? [y/N] ")
            );
        }
    }
}
