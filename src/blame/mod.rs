//! Pure blame: the live object as YAML, each line tied to the commit that wrote its value in
//! Git, or to the field manager that changed it in the cluster, or to the server's defaults.
//! `sides.rs` reads Git's side of it.

pub mod helm;
mod kustomize;
pub mod sides;

use serde::Serialize;
use serde_json::Value;

pub use kustomize::{GeneratorInput, KustomizationSide, generator_inputs};

use crate::drift;
use crate::fields::lines::LineIndex;
use crate::fields::{FieldPath, ManagedFields, Segment};
use crate::git::BlameLine;
use crate::object::ObjectKey;
use crate::schema::{ListKind, Node, Shape};

/// Where one line's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// The live value equals Git's; the commit that last changed its source line.
    #[serde(rename_all = "camelCase")]
    Git {
        commit: String,
        author: String,
        email: String,
        time: i64,
        offset_seconds: i32,
        file: String,
        line: usize,
        /// The repository of `file`, when it is another than the object's source's.
        #[serde(skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
    },
    /// Git does not declare it, or declares another value: who owns the live value.
    #[serde(rename_all = "camelCase")]
    Drift {
        manager: String,
        operation: String,
        time: Option<String>,
        subresource: Option<String>,
    },
    /// Set by a value from a `valuesFrom` object in the cluster, not from Git.
    #[serde(rename_all = "camelCase")]
    Values {
        /// `ConfigMap web-values key values.yaml`.
        source: String,
        /// The value's path in the values: `image.tag`.
        values_path: String,
    },
    /// Rendered so by the chart (a template or the chart's own defaults), with no value of
    /// the release's that changes it.
    #[serde(rename_all = "camelCase")]
    Chart {
        /// `chart charts/web 0.1.0`.
        chart: String,
        /// The template that renders the object.
        file: String,
    },
    /// Nobody set it: the API server's default.
    ServerDefault,
}

/// One line of the blamed object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlameRecord {
    pub path: FieldPath,
    pub text: String,
    pub origin: Origin,
}

/// What Git says about the object, when it has a source.
pub struct GitSide<'a> {
    /// Desired as applied (rendered: kustomize patches and transformers included).
    pub desired: &'a Value,
    /// The document as written in `file`, before kustomize.
    pub written: &'a Value,
    /// The file that declares it, its line index, and its blame at the applied commit.
    pub file: &'a str,
    pub lines: &'a LineIndex,
    pub blame: &'a [BlameLine],
    /// kustomize patches that may have set a value instead of `file`.
    pub patches: &'a [PatchSide],
    /// The kustomizations whose generators and transformers made desired.
    pub kustomizations: &'a [KustomizationSide],
}

/// One kustomize patch, as written in its file.
pub struct PatchSide {
    pub file: String,
    pub object: Value,
    pub lines: LineIndex,
    /// For an inline patch (a string in the kustomization), the line of that string.
    pub fixed_line: Option<usize>,
    pub blame: Vec<BlameLine>,
}

/// Blames every line of `live` (bookkeeping already removed by the caller).
pub fn annotate(
    live: &Value,
    git: Option<&GitSide<'_>>,
    managed: &ManagedFields,
    schema: Option<Node<'_>>,
) -> Vec<BlameRecord> {
    let mut lines = Vec::new();
    emit(live, &FieldPath::root(), 0, schema, &mut lines);
    lines
        .into_iter()
        .map(|(text, path, value)| BlameRecord {
            origin: origin(&path, &value, git, managed),
            path,
            text,
        })
        .collect()
}

/// Blames every line of `live`, an object a chart rendered, against `desired` (as the
/// reconciler applied it) and the chart's side (`helm`): a values line, a `valuesFrom` object
/// or the chart where the chart proves it, else the field managers.
pub fn annotate_chart(
    live: &Value,
    desired: &Value,
    chart: &helm::HelmSide,
    managed: &ManagedFields,
    schema: Option<Node<'_>>,
) -> Vec<BlameRecord> {
    let mut lines = Vec::new();
    emit(live, &FieldPath::root(), 0, schema, &mut lines);
    lines
        .into_iter()
        .map(|(text, path, value)| {
            // Live as applied, and as the chart renders it with the values as applied.
            let applied = path.resolve(desired).is_some_and(|d| equal_here(d, &value))
                && path
                    .resolve(&chart.rendered)
                    .is_none_or(|r| equal_here(r, &value));
            let claim = applied.then(|| helm::attribute(chart, &path)).flatten();
            let placed = |place: &helm::ValuePlace, values_path: String| match place {
                helm::ValuePlace::Git {
                    file,
                    line,
                    blame,
                    repo,
                } => git_origin_in(blame, file, *line, repo.clone()),
                helm::ValuePlace::Cluster { source } => Origin::Values {
                    source: source.clone(),
                    values_path,
                },
                helm::ValuePlace::Unknown => managers(&path, managed),
            };
            let origin = match claim {
                Some(helm::Claim::Value(leaf)) => placed(&leaf.place, helm::dotted(&leaf.path)),
                Some(helm::Claim::PostRenderer(place)) => placed(place, String::new()),
                Some(helm::Claim::Chart) => Origin::Chart {
                    chart: chart.chart.clone(),
                    file: chart.template.clone(),
                },
                None => managers(&path, managed),
            };
            BlameRecord { origin, path, text }
        })
        .collect()
}

fn git_origin(b: &BlameLine, file: &str, line: usize) -> Origin {
    git_origin_in(b, file, line, None)
}

/// [`git_origin`] of a file of `repo` (another repository than the object's source's).
fn git_origin_in(b: &BlameLine, file: &str, line: usize, repo: Option<String>) -> Origin {
    Origin::Git {
        commit: b.commit.clone(),
        author: b.author_name.clone(),
        email: b.author_email.clone(),
        time: b.author_time,
        offset_seconds: b.author_offset_seconds,
        file: file.to_owned(),
        line,
        repo,
    }
}

fn origin(
    path: &FieldPath,
    live: &Value,
    git: Option<&GitSide<'_>>,
    managed: &ManagedFields,
) -> Origin {
    if let Some(git) = git
        && let Some(desired) = path.resolve(git.desired)
        && equal_here(desired, live)
    {
        // Written so in the source file, or set by a patch: the patch's line; or by a
        // generator or transformer: the kustomization's line that configures it.
        let as_written = path
            .resolve(git.written)
            .is_some_and(|w| equal_here(w, live));
        if !as_written {
            for patch in git.patches {
                if path
                    .resolve(&patch.object)
                    .is_some_and(|p| equal_here(p, live))
                    && let Some(line) = patch.fixed_line.or_else(|| patch.lines.line(path))
                    && let Some(b) = patch.blame.get(line.saturating_sub(1))
                {
                    return git_origin(b, &patch.file, line);
                }
            }
            if let Some(claim) =
                kustomize::attribute(git.kustomizations, git.desired, git.written, path, desired)
            {
                return git_origin(claim.blame, claim.file, claim.line);
            }
        }
        if let Some(line) = git.lines.line(path)
            && let Some(b) = git.blame.get(line.saturating_sub(1))
        {
            return git_origin(b, git.file, line);
        }
    }
    managers(path, managed)
}

/// The newest manager that owns `path` (or something inside it), else the server's default.
fn managers(path: &FieldPath, managed: &ManagedFields) -> Origin {
    let mut owners = managed.owners(path);
    if owners.is_empty() {
        // A container line: whoever owns something inside it.
        owners = managed
            .entries
            .iter()
            .filter(|e| e.fields.leaves().any(|p| p.starts_with(path)))
            .collect();
    }
    owners.sort_by(|a, b| b.time.cmp(&a.time));
    match owners.first() {
        Some(e) => Origin::Drift {
            manager: e.manager.clone(),
            operation: e.operation.clone(),
            time: e.time.clone(),
            subresource: e.subresource.clone(),
        },
        None => Origin::ServerDefault,
    }
}

/// A scalar must be equal; a container line is Git's when Git declares the container.
fn equal_here(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)) => true,
        _ => drift::equivalent(desired, live, None),
    }
}

/// Writes `value` as YAML lines, each with the path of the field it shows.
fn emit(
    value: &Value,
    path: &FieldPath,
    indent: usize,
    node: Option<Node<'_>>,
    out: &mut Vec<(String, FieldPath, Value)>,
) {
    let Value::Object(map) = value else { return };
    let pad = " ".repeat(indent);
    for (key, v) in map {
        let child = path.child(Segment::Field(key.clone()));
        let child_node = node.and_then(|n| n.field(key));
        let label = yaml_key(key);
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push((format!("{pad}{label}:"), child.clone(), v.clone()));
                emit(v, &child, indent + 2, child_node, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push((format!("{pad}{label}:"), child.clone(), v.clone()));
                emit_list(items, &child, indent, child_node, out);
            }
            scalar => out.push((
                format!("{pad}{label}: {}", yaml_scalar(scalar)),
                child,
                scalar.clone(),
            )),
        }
    }
}

fn emit_list(
    items: &[Value],
    path: &FieldPath,
    indent: usize,
    node: Option<Node<'_>>,
    out: &mut Vec<(String, FieldPath, Value)>,
) {
    let pad = " ".repeat(indent);
    let keys = match node.map(|n| n.shape()) {
        Some(Shape::List(ListKind::Map { keys })) => Some(keys),
        _ => None,
    };
    let set = matches!(node.map(|n| n.shape()), Some(Shape::List(ListKind::Set)));
    let item_node = node.and_then(|n| n.items());
    for (i, item) in items.iter().enumerate() {
        let segment = match (&keys, item) {
            (Some(keys), Value::Object(_)) => Segment::key(
                keys.iter()
                    .filter(|k| !item[k.as_str()].is_null())
                    .map(|k| (k.as_str(), &item[k.as_str()])),
            ),
            (None, Value::Object(m)) if m.contains_key("name") && node.is_none() => {
                Segment::key([("name", &item["name"])])
            }
            (_, v) if set && !v.is_object() => Segment::value(v),
            _ => Segment::Index(i),
        };
        let item_path = path.child(segment);
        match item {
            Value::Object(m) if !m.is_empty() => {
                // `- first: value` then the rest under it.
                let mut lines = Vec::new();
                emit(item, &item_path, indent + 2, item_node, &mut lines);
                for (n, (text, p, v)) in lines.into_iter().enumerate() {
                    let text = if n == 0 {
                        format!("{pad}- {}", &text[indent + 2..])
                    } else {
                        text
                    };
                    out.push((text, p, v));
                }
            }
            scalar => out.push((
                format!("{pad}- {}", yaml_scalar(scalar)),
                item_path,
                scalar.clone(),
            )),
        }
    }
}

fn yaml_key(key: &str) -> String {
    yaml_scalar(&Value::String(key.to_owned()))
}

/// One-line YAML for a scalar (quoted when YAML would read it otherwise).
fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        Value::String(s) if s.contains('\n') => {
            serde_json::to_string(s).expect("strings serialise")
        }
        other => serde_saphyr::to_string(other)
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_else(|_| other.to_string()),
    }
}

/// Secret values never reach the output: their lines keep the key, the value is masked. So
/// is a line of any object whose value holds one of `secrets`, the values from Secrets its
/// reconciler put into it (a substituted variable, a Helm value from a Secret). With
/// `all` (its reconciler's Secrets could not be read, so which values came from them is
/// unknown), every line's value is masked.
pub fn mask_secret(
    key: &ObjectKey,
    mut records: Vec<BlameRecord>,
    secrets: &[String],
    all: bool,
) -> Vec<BlameRecord> {
    for r in &mut records {
        // A Secret's own values, judged by the path as it is.
        let secret_path =
            r.path.segments().len() > 1 && drift::is_secret_value(&key.group, &key.kind, &r.path);
        // A path names a key holding one of them (`hostAliases[ip=...]`) with it hidden, as
        // diff does; with `all`, every list item key.
        r.path = drift::hidden_path(&r.path, secrets, all);
        let (label, value) = match r.text.split_once(": ") {
            Some((label, value)) => (Some(label), value),
            None => (None, r.text.as_str()),
        };
        let value = value.trim_start().trim_start_matches("- ");
        // A line that only opens a map or list (`spec:`, `- ports:`) holds no value.
        let bare = r.text.trim().trim_start_matches("- ");
        let opens = (label.is_none() && bare.ends_with(':')) || bare.is_empty();
        let secret_path = (all && !opens) || secret_path;
        let unquoted = serde_saphyr::from_str::<String>(value).unwrap_or_else(|_| value.to_owned());
        let holds = drift::shows_secret(Some(&Value::String(unquoted)), secrets)
            || drift::shows_secret(Some(&Value::String(value.to_owned())), secrets);
        if !(secret_path || holds) {
            continue;
        }
        r.text = match label {
            Some(label)
                if !drift::shows_secret(Some(&Value::String(label.to_owned())), secrets) =>
            {
                format!("{label}: (hidden)")
            }
            Some(_) => "(hidden)".to_owned(),
            None if r.text.trim_start().starts_with("- ") => {
                let indent = r.text.len() - r.text.trim_start().len();
                format!("{}- (hidden)", &r.text[..indent])
            }
            None => "(hidden)".to_owned(),
        };
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blame_line(commit: &str, author: &str) -> BlameLine {
        BlameLine {
            line: 0,
            commit: commit.into(),
            original_path: "a.yaml".into(),
            original_line: 0,
            author_name: author.into(),
            author_email: format!("{author}@x"),
            author_time: 0,
            author_offset_seconds: 0,
            summary: "s".into(),
        }
    }

    /// The key of ConfigMap n/c.
    fn configmap() -> ObjectKey {
        ObjectKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("n".into()),
            name: "c".into(),
        }
    }

    #[test]
    fn a_line_holding_a_value_from_a_secret_is_masked_in_any_object() {
        let record = |path: FieldPath, text: &str| BlameRecord {
            path,
            text: text.into(),
            origin: Origin::ServerDefault,
        };
        let data = |key: &str| FieldPath::fields(["data", key]);
        let cm = configmap();
        let alias = FieldPath::fields(["spec", "hostAliases"])
            .child(Segment::key([("ip", &json!("hunter2"))]))
            .child(Segment::field("ip"));
        let records = vec![
            record(data("url"), "  url: postgres://u:hunter2@db"),
            record(data("pin"), "  pin: 'ab'"),
            record(data("args").child(Segment::Index(0)), "    - hunter2"),
            record(data("args").child(Segment::Index(1)), "    - ab"),
            record(data("tier"), "  tier: web"),
            record(alias, "  ip: hunter2"),
        ];
        let masked = mask_secret(&cm, records, &["hunter2".into(), "ab".into()], false);
        assert_eq!(
            masked[5].path.to_string(),
            ".spec.hostAliases[ip=\"(hidden)\"].ip"
        );
        assert_eq!(masked[4].path.to_string(), ".data.tier");
        let texts: Vec<&str> = masked.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "  url: (hidden)",
                "  pin: (hidden)",
                "    - (hidden)",
                "    - (hidden)",
                "  tier: web",
                "  ip: (hidden)",
            ]
        );
        // A Secret's own values are hidden by their path as it is, whatever the reconciler's
        // Secrets hold (one may be `data`).
        let secret = ObjectKey {
            kind: "Secret".into(),
            ..cm.clone()
        };
        let masked = mask_secret(
            &secret,
            vec![
                record(FieldPath::fields(["data"]), "data:"),
                record(data("password"), "  password: c2VjcmV0"),
            ],
            &["data".into(), "multi\nata\nline".into()],
            false,
        );
        let texts: Vec<&str> = masked.iter().map(|r| r.text.as_str()).collect();
        // (`data:` holds `data` itself, as a key: hidden too.)
        assert_eq!(texts, ["(hidden)", "  password: (hidden)"]);
        assert_eq!(masked[1].path.to_string(), "[\"(hidden)\"].password");
    }

    #[test]
    fn every_value_is_masked_when_the_reconcilers_secrets_are_unknown() {
        let record = |text: &str| BlameRecord {
            path: FieldPath::fields(["x"]),
            text: text.into(),
            origin: Origin::ServerDefault,
        };
        let cm = configmap();
        let lines = [
            "metadata:",
            "  name: c",
            "data:",
            "  url: postgres://db",
            "  script: |",
            "    echo token",
            "  args:",
            "    - --verbose",
            "  - name: web",
            "  - ports:",
        ];
        let masked = mask_secret(&cm, lines.map(record).to_vec(), &[], true);
        let texts: Vec<&str> = masked.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "metadata:",
                "  name: (hidden)",
                "data:",
                "  url: (hidden)",
                "  script: (hidden)",
                "(hidden)",
                "  args:",
                "    - (hidden)",
                "  - name: (hidden)",
                "  - ports:",
            ]
        );
    }

    #[test]
    fn every_list_item_key_is_hidden_in_paths_when_the_secrets_are_unknown() {
        let cm = configmap();
        let alias = FieldPath::fields(["spec", "hostAliases"])
            .child(Segment::key([("ip", &json!("10.1.2.3"))]))
            .child(Segment::field("ip"));
        let record = BlameRecord {
            path: alias,
            text: "    ip: 10.1.2.3".into(),
            origin: Origin::ServerDefault,
        };
        let masked = mask_secret(&cm, vec![record], &[], true);
        assert_eq!(
            masked[0].path.to_string(),
            ".spec.hostAliases[ip=\"(hidden)\"].ip"
        );
        assert_eq!(masked[0].text, "    ip: (hidden)");
    }

    #[test]
    fn git_drift_and_defaults() {
        let file =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: '1'\n  b: '2'\n";
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"},
                          "data": {"a": "1", "b": "changed", "c": "new"}});
        let managed = ManagedFields::of(&json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1", "time": "2026-11-26T07:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}, "f:c": {}}}}]}}))
        .unwrap();
        let index = LineIndex::of_document(file, (1, 7)).unwrap();
        let lines: Vec<BlameLine> = (1..=7)
            .map(|n| blame_line(&format!("{n:040}"), if n == 6 { "alice" } else { "bob" }))
            .collect();
        let git = GitSide {
            desired: &desired,
            written: &desired,
            file: "a.yaml",
            lines: &index,
            blame: &lines,
            patches: &[],
            kustomizations: &[],
        };
        let records = annotate(&live, Some(&git), &managed, None);
        let by_path = |p: &str| {
            records
                .iter()
                .find(|r| r.path.to_string() == p)
                .unwrap_or_else(|| panic!("{p}: {records:#?}"))
        };
        match &by_path(".data.a").origin {
            Origin::Git { author, line, .. } => assert_eq!((author.as_str(), *line), ("alice", 6)),
            other => panic!("{other:?}"),
        }
        assert_eq!(by_path(".data.a").text, "  a: \"1\"");
        for p in [".data.b", ".data.c"] {
            assert!(
                matches!(&by_path(p).origin, Origin::Drift { manager, .. } if manager == "kubectl-edit"),
                "{p}"
            );
        }
        assert_eq!(by_path(".metadata.namespace").origin, Origin::ServerDefault);
    }

    #[test]
    fn values_from_kustomize_transformers_blame_the_kustomization() {
        let file =
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n";
        let kfile = "resources: [web.yaml]\nnamePrefix: prod-\ncommonLabels:\n  team: payments\n";
        let written = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "web"}, "spec": {"replicas": 1}});
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "prod-web", "labels": {"team": "payments"}},
                             "spec": {"replicas": 1}});
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "prod-web", "labels": {"team": "payments", "owner": "x"}},
                          "spec": {"replicas": 1}});
        let managed = ManagedFields::of(&json!({"metadata": {"managedFields": [
            {"manager": "kubectl-label", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:owner": {}}}}}]}}))
        .unwrap();
        let index = LineIndex::of_document(file, (1, 6)).unwrap();
        let file_blame: Vec<BlameLine> = (1..=6)
            .map(|_| blame_line(&"a".repeat(40), "alice"))
            .collect();
        let kustomization = KustomizationSide {
            file: "apps/kustomization.yaml".into(),
            object: crate::render::documents("k", kfile.as_bytes()).unwrap()[0]
                .object
                .clone(),
            lines: LineIndex::of_document(kfile, (1, 4)).unwrap(),
            blame: (1..=4)
                .map(|n| blame_line(&format!("{n:040}"), if n == 2 { "bob" } else { "carol" }))
                .collect(),
            transformers: vec!["PrefixTransformer".into(), "LabelTransformer".into()],
            generated: false,
            inputs: Vec::new(),
        };
        let git = GitSide {
            desired: &desired,
            written: &written,
            file: "apps/web.yaml",
            lines: &index,
            blame: &file_blame,
            patches: &[],
            kustomizations: std::slice::from_ref(&kustomization),
        };
        let records = annotate(&live, Some(&git), &managed, None);
        let origin = |p: &str| {
            records
                .iter()
                .find(|r| r.path.to_string() == p)
                .map(|r| r.origin.clone())
                .unwrap_or_else(|| panic!("{p}: {records:#?}"))
        };
        let place = |p: &str| match origin(p) {
            Origin::Git {
                file, line, author, ..
            } => (file, line, author),
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(
            place(".metadata.name"),
            ("apps/kustomization.yaml".into(), 2, "bob".into())
        );
        assert_eq!(
            place(".metadata.labels.team"),
            ("apps/kustomization.yaml".into(), 4, "carol".into())
        );
        assert_eq!(
            place(".metadata.labels"),
            ("apps/kustomization.yaml".into(), 4, "carol".into())
        );
        assert_eq!(
            place(".spec.replicas"),
            ("apps/web.yaml".into(), 6, "alice".into())
        );
        assert!(
            matches!(origin(".metadata.labels.owner"), Origin::Drift { manager, .. } if manager == "kubectl-label")
        );
    }

    #[test]
    fn list_items_are_emitted_with_their_keys() {
        let live = json!({"spec": {"containers": [{"name": "web", "image": "a"}, {"name": "side", "image": "b"}]}});
        let mut out = Vec::new();
        emit(&live, &FieldPath::root(), 0, None, &mut out);
        let texts: Vec<(String, String)> = out
            .iter()
            .map(|(t, p, _)| (t.clone(), p.to_string()))
            .collect();
        assert_eq!(
            texts,
            [
                ("spec:".into(), ".spec".into()),
                ("  containers:".into(), ".spec.containers".into()),
                // Keys in alphabetical order, as `kubectl get -o yaml` writes them.
                (
                    "  - image: a".into(),
                    ".spec.containers[name=web].image".into()
                ),
                (
                    "    name: web".into(),
                    ".spec.containers[name=web].name".into()
                ),
                (
                    "  - image: b".into(),
                    ".spec.containers[name=side].image".into()
                ),
                (
                    "    name: side".into(),
                    ".spec.containers[name=side].name".into()
                ),
            ]
        );
    }
}
