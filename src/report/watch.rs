//! `kubectl gitops watch` renderers: one line per verdict change, as text (time first) or as a
//! `DriftEvent` JSON object, and the summaries said on stderr at start and at stop.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use serde::Serialize;
use serde_json::Value;

use super::diff::reason;
use super::time::rfc3339;
use crate::drift::{DriftReport, FieldReport, ObjectReport, SourceSummary, Status, Summary, Why};
use crate::object::ObjectKey;

/// Output formats of `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchFormat {
    /// One line per event, time first.
    Text,
    /// One `DriftEvent` JSON object per line.
    Json,
}

/// What made watch look at the object again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A watch event: the live object changed, appeared or was deleted.
    Cluster,
    /// The tracked branch moved.
    Git,
    /// A chart repository now offers another version for a chart's version range.
    Chart,
    /// The watch lost its place (410 Gone) and listed again: the change happened meanwhile.
    Relist,
    /// The object was in error and was evaluated again at a poll (what failed may have
    /// passed: a repository that answers again).
    Retry,
}

/// The commit of a pending change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventCommit {
    pub id: String,
    pub author: String,
    /// Commit time, RFC 3339 UTC.
    pub time: String,
    pub subject: String,
}

/// One verdict change: `kind: DriftEvent`, one per line with `-o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftEvent {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// When watch saw it, RFC 3339 UTC.
    pub time: String,
    /// The kube context it was seen in (`--context a,b`, `--all-contexts`); absent when one
    /// context is watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub object: ObjectKey,
    /// None: not followed before (a new object).
    pub old_status: Option<Status>,
    /// None: no longer in the cluster, and Git does not declare it.
    pub new_status: Option<Status>,
    pub cause: Cause,
    /// The drifted fields now (Secret values masked), each with its why.
    pub fields: Vec<FieldReport>,
    /// The out-of-band manager of the most recent change among the fields (managedFields), and
    /// when it made it.
    pub manager: Option<String>,
    pub changed_at: Option<String>,
    /// The commit not applied yet, when fields are pending.
    pub commit: Option<EventCommit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DriftEvent {
    /// The event for `object` going from `old` to `new`: `report` is the new verdict (None when
    /// the object is gone or was not evaluated).
    pub fn new(
        unix_time: i64,
        object: ObjectKey,
        old: Option<Status>,
        new: Option<Status>,
        cause: Cause,
        report: Option<&ObjectReport>,
        resource_version: Option<String>,
    ) -> DriftEvent {
        let fields = report.map(|r| r.fields.clone()).unwrap_or_default();
        let latest = fields
            .iter()
            .filter_map(|f| match &f.why {
                Why::OutOfBand { manager, time, .. } => Some((manager, time)),
                _ => None,
            })
            // RFC 3339 in UTC sorts as text; a change with no time sorts first.
            .max_by(|a, b| a.1.cmp(b.1));
        let commit = fields.iter().find_map(|f| match &f.why {
            Why::Pending {
                commit,
                author,
                time,
                subject,
            } => Some(EventCommit {
                id: commit.clone(),
                author: author.clone(),
                time: rfc3339(*time),
                subject: subject.clone(),
            }),
            _ => None,
        });
        DriftEvent {
            api_version: super::API_VERSION,
            kind: "DriftEvent",
            time: rfc3339(unix_time),
            context: None,
            object,
            old_status: old,
            new_status: new,
            cause,
            manager: latest.map(|(m, _)| m.clone()),
            changed_at: latest.and_then(|(_, t)| t.clone()),
            commit,
            fields,
            source: report.and_then(|r| r.source.clone()),
            resource_version,
            error: report.and_then(|r| r.error.clone()),
        }
    }

    /// Whether the object is now out of line with Git: drifted, missing or orphaned.
    pub fn is_drift(&self) -> bool {
        matches!(
            self.new_status,
            Some(Status::Drifted | Status::Missing | Status::Orphaned)
        )
    }
}

/// Writes one event: a line of text, or a JSON object on one line.
pub fn render_event(
    out: &mut dyn Write,
    event: &DriftEvent,
    format: WatchFormat,
) -> std::io::Result<()> {
    match format {
        WatchFormat::Json => {
            serde_json::to_writer(&mut *out, event)?;
            writeln!(out)?;
        }
        WatchFormat::Text => writeln!(out, "{}", text_line(event))?,
    }
    out.flush()
}

const TIME: Style = Style::new().dimmed();

fn status_style(status: Option<Status>) -> Style {
    match status {
        Some(Status::InSync) => AnsiColor::Green.on_default(),
        Some(Status::Drifted) => AnsiColor::Yellow.on_default().bold(),
        Some(Status::Missing) => AnsiColor::Red.on_default().bold(),
        Some(Status::Orphaned) => AnsiColor::Magenta.on_default().bold(),
        Some(Status::NoSource) => AnsiColor::Cyan.on_default(),
        Some(Status::Error) => AnsiColor::Red.on_default().bold(),
        None => Style::new(),
    }
}

fn status_word(status: Option<Status>, none: &'static str) -> &'static str {
    status.map_or(none, Status::as_str)
}

/// `2026-11-26T07:00:00Z  Deployment.apps shop/web  in-sync → drifted  .spec.replicas: 2 → 5
/// (out of band: kubectl, Update (scale), 2026-11-26T07:00:00Z)`. Styles are stripped by the
/// stream when colour is off.
pub fn text_line(event: &DriftEvent) -> String {
    let new = status_style(event.new_status);
    let context = event
        .context
        .as_deref()
        .map(|c| format!("[{c}]  "))
        .unwrap_or_default();
    let mut line = format!(
        "{TIME}{}{TIME:#}  {context}{}  {} → {new}{}{new:#}",
        event.time,
        event.object,
        status_word(event.old_status, "new"),
        status_word(event.new_status, "gone"),
    );
    let detail = match (event.old_status, event.new_status, &event.error) {
        (_, _, Some(error)) => error.clone(),
        (_, Some(Status::Missing), _) if matches!(event.cause, Cause::Git | Cause::Retry) => {
            "declared in Git, not in the cluster".to_owned()
        }
        (_, Some(Status::Missing), _) if event.cause == Cause::Chart => {
            "declared by the chart, not in the cluster".to_owned()
        }
        (_, Some(Status::Missing), _) => "deleted from the cluster".to_owned(),
        (None, Some(Status::NoSource), _) => "created outside Git".to_owned(),
        (_, None, _) => "no longer in the cluster nor in Git".to_owned(),
        _ => event
            .fields
            .iter()
            .map(field_text)
            .collect::<Vec<_>>()
            .join("; "),
    };
    if !detail.is_empty() {
        line.push_str("  ");
        line.push_str(&detail);
    }
    if event.cause == Cause::Relist {
        line.push_str(" (while the watch was down)");
    }
    line
}

/// `.spec.replicas: 2 → 5 (out of band: kubectl, Update (scale), ...)`.
fn field_text(field: &FieldReport) -> String {
    format!(
        "{}: {} → {} ({})",
        field.path,
        short_value(field.git.as_ref()),
        short_value(field.live.as_ref()),
        reason(field)
    )
}

/// A value on one line, cut at 60 characters.
fn short_value(value: Option<&Value>) -> String {
    const MAX: usize = 60;
    let text = match value {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let text = crate::text::single_line(&text);
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The objects followed, by status: what the first evaluation found.
#[derive(Debug, Clone, Default)]
pub struct WatchCounts {
    pub by_status: Vec<(Status, Vec<ObjectKey>)>,
}

impl WatchCounts {
    pub fn add(&mut self, status: Status, key: ObjectKey) {
        match self.by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, keys)) => keys.push(key),
            None => self.by_status.push((status, vec![key])),
        }
    }

    fn count(&self, status: Status) -> usize {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, k)| k.len())
    }

    /// `15 in sync, 1 drifted, 0 missing, 0 orphaned`, as `diff` says it.
    pub fn line(&self) -> String {
        let summary = Summary {
            in_sync: self.count(Status::InSync),
            drifted: self.count(Status::Drifted),
            missing: self.count(Status::Missing),
            orphaned: self.count(Status::Orphaned),
            no_source: self.count(Status::NoSource),
            errors: self.count(Status::Error),
            ignored_fields: 0,
        };
        super::summary_line(&DriftReport {
            server_side: String::new(),
            summary,
            items: Vec::new(),
        })
    }

    /// One line per status present, in a fixed order, naming the first few objects of every
    /// status but in-sync: `drifted: 2 (Deployment.apps shop/web, ConfigMap shop/x)`.
    pub fn lines(&self) -> Vec<String> {
        const NAMED: usize = 3;
        let order = [
            Status::InSync,
            Status::Drifted,
            Status::Missing,
            Status::Orphaned,
            Status::NoSource,
            Status::Error,
        ];
        let mut lines = Vec::new();
        for status in order {
            let Some((_, keys)) = self.by_status.iter().find(|(s, _)| *s == status) else {
                continue;
            };
            let mut keys: Vec<&ObjectKey> = keys.iter().collect();
            keys.sort();
            let mut line = format!("{}: {}", status.as_str(), keys.len());
            if status != Status::InSync {
                let named: Vec<String> = keys.iter().take(NAMED).map(|k| k.to_string()).collect();
                line.push_str(&format!(" ({}", named.join(", ")));
                if keys.len() > NAMED {
                    line.push_str(&format!(" and {} more", keys.len() - NAMED));
                }
                line.push(')');
            }
            lines.push(line);
        }
        if lines.is_empty() {
            lines.push("no object with a source in scope yet".to_owned());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The line as printed with colour off.
    fn plain(event: &DriftEvent) -> String {
        anstream::adapter::strip_str(&text_line(event)).to_string()
    }

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: if kind == "Deployment" { "apps" } else { "" }.into(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    fn drifted(fields: Vec<FieldReport>) -> ObjectReport {
        ObjectReport {
            object: key("Deployment", "web"),
            status: Status::Drifted,
            verdict: None,
            source: None,
            fields,
            ignored: Vec::new(),
            error: None,
            not_compared: Vec::new(),
        }
    }

    fn out_of_band(manager: &str, time: &str) -> Why {
        Why::OutOfBand {
            manager: manager.into(),
            operation: "Update".into(),
            time: Some(time.into()),
            subresource: None,
        }
    }

    #[test]
    fn an_event_names_the_latest_manager_and_the_pending_commit() {
        let report = drifted(vec![
            FieldReport {
                path: ".spec.replicas".into(),
                git: Some(json!(2)),
                live: Some(json!(5)),
                why: out_of_band("kubectl", "2026-01-01T10:00:00Z"),
                ignored_by: None,
                may_be_server_default: Vec::new(),
            },
            FieldReport {
                path: ".spec.template.spec.containers[name=web].image".into(),
                git: Some(json!("nginx:1.27")),
                live: Some(json!("nginx:1.28")),
                why: out_of_band("kubectl-set", "2026-01-01T11:00:00Z"),
                ignored_by: None,
                may_be_server_default: Vec::new(),
            },
            FieldReport {
                path: ".metadata.labels.tier".into(),
                git: Some(json!("web")),
                live: None,
                why: Why::Pending {
                    commit: "9f8e7d6c".into(),
                    author: "Bob Builder".into(),
                    time: 1_700_000_000,
                    subject: "Label it".into(),
                },
                ignored_by: None,
                may_be_server_default: Vec::new(),
            },
        ]);
        let event = DriftEvent::new(
            0,
            report.object.clone(),
            Some(Status::InSync),
            Some(Status::Drifted),
            Cause::Cluster,
            Some(&report),
            Some("42".into()),
        );
        assert!(event.is_drift());
        assert_eq!(event.manager.as_deref(), Some("kubectl-set"));
        assert_eq!(event.changed_at.as_deref(), Some("2026-01-01T11:00:00Z"));
        let commit = event.commit.as_ref().expect("a pending commit");
        assert_eq!(
            (commit.id.as_str(), commit.author.as_str()),
            ("9f8e7d6c", "Bob Builder")
        );
        assert_eq!(commit.time, "2023-11-14T22:13:20Z");

        let doc = serde_json::to_value(&event).unwrap();
        assert_eq!(doc["apiVersion"], "kubectl-gitops.dev/v1alpha1");
        assert_eq!(doc["kind"], "DriftEvent");
        assert_eq!(doc["oldStatus"], "in-sync");
        assert_eq!(doc["newStatus"], "drifted");
        assert_eq!(doc["cause"], "cluster");
        assert_eq!(doc["object"]["name"], "web");
        assert_eq!(doc["fields"][0]["why"]["manager"], "kubectl");

        let line = plain(&event);
        assert!(
            line.starts_with("1970-01-01T00:00:00Z  Deployment.apps shop/web  in-sync → drifted  .spec.replicas: 2 → 5 (out of band: kubectl, Update, 2026-01-01T10:00:00Z); "),
            "{line}"
        );
        assert!(line.contains("nginx:1.27 → nginx:1.28"), "{line}");
        assert!(
            line.contains("(absent) (pending: 9f8e7d6 Bob Builder"),
            "{line}"
        );
        assert!(doc.get("context").is_none(), "one context: not named");

        // A fleet watch names the context, in JSON and in the line.
        let mut event = event;
        event.context = Some("prod-eu".into());
        assert_eq!(serde_json::to_value(&event).unwrap()["context"], "prod-eu");
        assert!(
            plain(&event).starts_with(
                "1970-01-01T00:00:00Z  [prod-eu]  Deployment.apps shop/web  in-sync → drifted"
            ),
            "{}",
            plain(&event)
        );
    }

    #[test]
    fn deletions_new_objects_and_relists_read_plainly() {
        let gone = DriftEvent::new(
            0,
            key("ConfigMap", "settings"),
            Some(Status::InSync),
            Some(Status::Missing),
            Cause::Cluster,
            None,
            None,
        );
        assert!(gone.is_drift());
        assert!(gone.manager.is_none() && gone.commit.is_none());
        assert!(
            plain(&gone)
                .ends_with("ConfigMap shop/settings  in-sync → missing  deleted from the cluster"),
            "{}",
            plain(&gone)
        );
        let doc = serde_json::to_value(&gone).unwrap();
        assert_eq!(doc["manager"], Value::Null, "present, null: {doc}");
        assert_eq!(doc["fields"], json!([]));

        let new = DriftEvent::new(
            0,
            key("ConfigMap", "by-hand"),
            None,
            Some(Status::NoSource),
            Cause::Relist,
            None,
            None,
        );
        assert!(!new.is_drift());
        assert!(
            plain(&new)
                .ends_with("new → no-source  created outside Git (while the watch was down)"),
            "{}",
            plain(&new)
        );
        let back = DriftEvent::new(
            0,
            key("ConfigMap", "settings"),
            Some(Status::Drifted),
            Some(Status::InSync),
            Cause::Cluster,
            None,
            None,
        );
        assert!(plain(&back).ends_with("drifted → in-sync"));
    }

    #[test]
    fn long_values_are_cut_and_json_is_one_line() {
        let long = json!({"a": "x".repeat(100)});
        let text = short_value(Some(&long));
        assert_eq!(text.chars().count(), 60);
        assert!(text.ends_with('…'));
        let event = DriftEvent::new(
            0,
            key("ConfigMap", "c"),
            None,
            Some(Status::NoSource),
            Cause::Cluster,
            None,
            None,
        );
        let mut out = Vec::new();
        render_event(&mut out, &event, WatchFormat::Json).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn start_summary_names_what_is_not_in_sync() {
        let mut counts = WatchCounts::default();
        for name in ["a", "b"] {
            counts.add(Status::InSync, key("ConfigMap", name));
        }
        for name in ["w", "x", "y", "z"] {
            counts.add(Status::Drifted, key("Deployment", name));
        }
        assert_eq!(
            counts.lines(),
            [
                "in-sync: 2",
                "drifted: 4 (Deployment.apps shop/w, Deployment.apps shop/x, Deployment.apps shop/y and 1 more)"
            ]
        );
        assert_eq!(counts.line(), "2 in sync, 4 drifted, 0 missing, 0 orphaned");
        assert_eq!(
            WatchCounts::default().lines(),
            ["no object with a source in scope yet"]
        );
    }
}
