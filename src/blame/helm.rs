//! Lines of a chart-rendered object, tied to the values line that set them where that can be
//! proven: the chart is rendered once as applied and once more for each value with only that
//! value changed. A field whose rendered value changes with a value was set by it; no line is
//! guessed from names. A field no value changes, that the chart renders, is the chart's (its
//! template or its own defaults). What neither yields is left to the field managers.

use serde_json::Value;

use crate::fields::{FieldPath, Segment};
use crate::git::BlameLine;

/// Where one value (a leaf of the values helm was given) is set, for the source that wins.
#[derive(Debug, Clone)]
pub enum ValuePlace {
    /// A line of a file in Git: a values file, or the HelmRelease's `spec.values`.
    Git {
        file: String,
        line: usize,
        blame: BlameLine,
        /// The repository, when it is another than the object's source's (a values file of
        /// an Argo CD `ref` source).
        repo: Option<String>,
    },
    /// A `valuesFrom` object in the cluster: `ConfigMap web-values key values.yaml`.
    Cluster { source: String },
    /// No line of its source could be found: a field it changes is claimed for nobody.
    Unknown,
}

/// One value of the composed values: its path in the values and where it is set.
#[derive(Debug, Clone)]
pub struct ValueLeaf {
    pub path: Vec<String>,
    pub place: ValuePlace,
}

/// What the chart says about the blamed object.
pub struct HelmSide {
    /// The object as the chart renders it with the values as applied (before the reconciler's
    /// post-rendering).
    pub rendered: Value,
    /// Each value and the object rendered with only that value changed (Null when the object
    /// is then not rendered at all).
    pub probes: Vec<(ValueLeaf, Value)>,
    /// `chart web 0.1.0`, and the template that renders the object.
    pub chart: String,
    pub template: String,
    /// The reconciler's post-renderers (Flux `spec.postRenderers`), when it has any: the
    /// object before them, and after each with where that one is written. `rendered` and the
    /// probes are post-rendered.
    pub post: Option<PostStages>,
    /// Whether every value was probed. When one could not be (the chart fails to render
    /// with it changed), a field no probe changed may still be that value's: no line is
    /// claimed for the chart then.
    pub complete: bool,
}

/// The blamed object before the post-renderers, and after each of them in order.
pub struct PostStages {
    pub bare: Value,
    pub after: Vec<(Value, ValuePlace)>,
}

/// A values source in merge order, as parsed, and how to find each value's place in it.
pub struct ValuesLayer<'a> {
    pub values: &'a Value,
    pub place: &'a dyn Fn(&[String]) -> Option<ValuePlace>,
}

/// The leaves of the values `layers` compose to, each with the place of the last layer that
/// sets it (later layers win, maps merge, anything else is replaced: Helm's coalescing). A
/// leaf is a scalar or a list; null (which unsets) and empty maps are none.
pub fn leaves(layers: &[ValuesLayer<'_>]) -> Vec<ValueLeaf> {
    let mut out: Vec<ValueLeaf> = Vec::new();
    for layer in layers {
        let mut paths = Vec::new();
        walk(layer.values, &mut Vec::new(), &mut paths);
        for (path, value) in paths {
            // A later layer replaces the value at its path and everything under it.
            out.retain(|l| !l.path.starts_with(&path) && !path.starts_with(&l.path));
            if value.is_null() {
                continue;
            }
            let place = (layer.place)(&path).unwrap_or(ValuePlace::Unknown);
            out.push(ValueLeaf { path, place });
        }
    }
    out
}

fn walk(value: &Value, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                at.push(k.clone());
                walk(v, at, out);
                at.pop();
            }
        }
        Value::Object(_) => {}
        other if !at.is_empty() => out.push((at.clone(), other.clone())),
        _ => {}
    }
}

/// `value` changed so that any template using it renders something else: a string gets a
/// suffix, a number grows by one, a boolean flips, every item of a list (every entry of a
/// map in it) changes so, an empty list gets an item. None for null.
pub fn perturb(value: &Value) -> Option<Value> {
    match value {
        Value::String(s) => Some(Value::String(format!("{s}-kubectl-gitops-probe"))),
        Value::Bool(b) => Some(Value::Bool(!b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(Value::from(i.checked_add(1).unwrap_or(i - 1))),
            (None, Some(f)) => Some(Value::from(f + 1.0)),
            _ => None,
        },
        Value::Array(items) if items.is_empty() => {
            Some(Value::Array(vec![Value::from("kubectl-gitops-probe")]))
        }
        Value::Array(items) => {
            let changed: Vec<Value> = items
                .iter()
                .map(|v| perturb(v).unwrap_or_else(|| v.clone()))
                .collect();
            (changed != *items).then_some(Value::Array(changed))
        }
        Value::Object(map) => {
            let changed: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), perturb(v).unwrap_or_else(|| v.clone())))
                .collect();
            (changed != *map).then_some(Value::Object(changed))
        }
        Value::Null => None,
    }
}

/// A switch changed so that a template's `if` still reads it the same: `true` to a string
/// (not empty, so true), `false` to the empty string (false). A template that renders the
/// switch itself renders something else. None for anything else.
pub fn still_passing(value: &Value) -> Option<Value> {
    match value {
        Value::Bool(true) => Some(Value::from("kubectl-gitops-probe")),
        Value::Bool(false) => Some(Value::from("")),
        _ => None,
    }
}

/// The values `base` with the value at `path` replaced by `with` (maps made on the way).
pub fn with_value(base: &Value, path: &[String], with: Value) -> Value {
    let mut out = base.clone();
    if !out.is_object() {
        out = Value::Object(Default::default());
    }
    let mut at = &mut out;
    for (i, key) in path.iter().enumerate() {
        let map = at.as_object_mut().expect("made a map above");
        if i + 1 == path.len() {
            map.insert(key.clone(), with);
            break;
        }
        let next = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Default::default()));
        if !next.is_object() {
            *next = Value::Object(Default::default());
        }
        at = next;
    }
    out
}

/// The value at `path` in `values`.
pub fn value_at<'a>(values: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(values, |v, k| v.get(k))
}

/// What set the line at `path`, when the chart proves it: the values that change it (the most
/// recently changed line among them in Git, else a cluster source), else the chart when it
/// renders the field. None: the chart does not render it (the reconciler or someone else set
/// it).
pub fn attribute<'a>(side: &'a HelmSide, path: &FieldPath) -> Option<Claim<'a>> {
    let here = path.resolve(&side.rendered);
    if let (Some(post), Some(_)) = (&side.post, here) {
        // The last post-renderer that wrote the field: a scalar it changed, or anything it
        // added. A map or list it only changed inside is the chart's key.
        let container = |v: &Value| v.is_object() || v.is_array();
        let mut before = path.resolve(&post.bare);
        let mut claim = None;
        for (object, place) in &post.after {
            let after = path.resolve(object);
            let wrote = match (before, after) {
                (None, Some(_)) => true,
                (Some(b), Some(a)) => a != b && !(container(a) && container(b)),
                _ => false,
            };
            if wrote {
                claim = Some(place);
            }
            before = after;
        }
        if let Some(place) = claim {
            return Some(Claim::PostRenderer(place));
        }
    }
    let mut git: Option<(&ValueLeaf, &BlameLine)> = None;
    let mut cluster: Option<&ValueLeaf> = None;
    let mut unknown = false;
    // A container line is the chart's key; its items are blamed on their own lines.
    let scalar = here.is_some_and(|v| !v.is_object() && !v.is_array());
    if scalar || here.is_none() {
        for (leaf, probe) in &side.probes {
            if path.resolve(probe) == here {
                continue;
            }
            match &leaf.place {
                ValuePlace::Git { blame, .. } => {
                    if git.is_none_or(|(_, b)| blame.author_time > b.author_time) {
                        git = Some((leaf, blame));
                    }
                }
                ValuePlace::Cluster { .. } => {
                    cluster.get_or_insert(leaf);
                }
                ValuePlace::Unknown => unknown = true,
            }
        }
    }
    match (git, cluster, here) {
        (Some((leaf, _)), _, Some(_)) => Some(Claim::Value(leaf)),
        (None, Some(leaf), Some(_)) => Some(Claim::Value(leaf)),
        (_, _, Some(_)) if side.complete && !unknown => Some(Claim::Chart),
        (_, _, Some(_)) => None,
        (_, _, None) => None,
    }
}

/// What [`attribute`] found.
#[derive(Debug)]
pub enum Claim<'a> {
    Value(&'a ValueLeaf),
    /// A post-renderer wrote it (its patch or image), where it is written.
    PostRenderer(&'a ValuePlace),
    Chart,
}

/// `a.b.c` for a values path, as `--set` names it.
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|k| {
            if k.contains('.') {
                format!("\"{k}\"")
            } else {
                k.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The values path an Argo CD parameter (`--set` name) sets: `a.b.c`, with `\.` inside a key.
/// None for what helm reads otherwise (list indexes, several names at once), which blame
/// cannot change on its own.
pub fn parameter_path(name: &str) -> Option<Vec<String>> {
    if name.is_empty() || name.contains(['[', ']', ',', '=']) {
        return None;
    }
    let mut path = vec![String::new()];
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => path.last_mut()?.push(chars.next()?),
            '.' => path.push(String::new()),
            c => path.last_mut()?.push(c),
        }
    }
    (!path.iter().any(String::is_empty)).then_some(path)
}

/// A parameter's value as `--set` types it (helm's strvals): `true`/`false`, `null`, an
/// integer without a leading zero, else the string; always the string with forceString.
pub fn parameter_value(value: &str, force_string: bool) -> Value {
    if force_string {
        return Value::from(value);
    }
    if value.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if value.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if value.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if value == "0" {
        return Value::from(0);
    }
    if !value.starts_with('0')
        && let Ok(i) = value.parse::<i64>()
    {
        return Value::from(i);
    }
    Value::from(value)
}

/// A parameter's value changed as [`perturb`] changes a value, written back as `--set` reads
/// it. None for null and for a `{a,b}` list.
pub fn perturb_parameter(value: &str, force_string: bool) -> Option<String> {
    if !force_string && value.starts_with('{') && value.ends_with('}') {
        return None;
    }
    match perturb(&parameter_value(value, force_string))? {
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// The field path of a values path inside `under` (`.spec.values` in a HelmRelease).
pub fn field_path(under: &FieldPath, path: &[String]) -> FieldPath {
    path.iter()
        .fold(under.clone(), |p, k| p.child(Segment::Field(k.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(commit: &str, time: i64) -> BlameLine {
        BlameLine {
            line: 1,
            commit: commit.into(),
            original_path: "f".into(),
            original_line: 1,
            author_name: "A".into(),
            author_email: "a@example.com".into(),
            author_time: time,
            author_offset_seconds: 0,
            summary: "s".into(),
        }
    }

    fn git(file: &str, commit: &str, time: i64) -> impl Fn(&[String]) -> Option<ValuePlace> {
        let (file, commit) = (file.to_owned(), commit.to_owned());
        move |_: &[String]| {
            Some(ValuePlace::Git {
                file: file.clone(),
                line: 1,
                blame: line(&commit, time),
                repo: None,
            })
        }
    }

    #[test]
    fn a_switch_still_passes_an_if_when_changed_so() {
        // Go templates: a non-empty string is true, the empty string false.
        assert_eq!(
            still_passing(&json!(true)),
            Some(json!("kubectl-gitops-probe"))
        );
        assert_eq!(still_passing(&json!(false)), Some(json!("")));
        assert_eq!(still_passing(&json!("on")), None);
        assert_eq!(still_passing(&json!(1)), None);
    }

    #[test]
    fn the_last_layer_that_sets_a_value_wins() {
        let chart_file = json!({"image": {"repo": "nginx", "tag": "1"}, "port": 80, "list": [1]});
        let env = json!({"image": {"tag": "2"}, "list": [2, 3], "gone": null});
        let inline = json!({"port": 81, "image": "whole"});
        let (a, b, c) = (git("a", "c1", 1), git("b", "c2", 2), git("c", "c3", 3));
        let layers = [
            ValuesLayer {
                values: &chart_file,
                place: &a,
            },
            ValuesLayer {
                values: &env,
                place: &b,
            },
            ValuesLayer {
                values: &inline,
                place: &c,
            },
        ];
        let found: Vec<(String, String)> = leaves(&layers)
            .into_iter()
            .map(|l| {
                let file = match l.place {
                    ValuePlace::Git { file, .. } => file,
                    ValuePlace::Cluster { source } => source,
                    ValuePlace::Unknown => "?".into(),
                };
                (dotted(&l.path), file)
            })
            .collect();
        // `image` replaced as a whole by the inline string: its keys are gone.
        assert_eq!(
            found,
            [
                ("list".to_owned(), "b".to_owned()),
                ("image".to_owned(), "c".to_owned()),
                ("port".to_owned(), "c".to_owned()),
            ]
        );
    }

    #[test]
    fn every_kind_of_value_can_be_changed() {
        assert_eq!(perturb(&json!("a")), Some(json!("a-kubectl-gitops-probe")));
        assert_eq!(perturb(&json!(2)), Some(json!(3)));
        assert_eq!(perturb(&json!(1.5)), Some(json!(2.5)));
        assert_eq!(perturb(&json!(true)), Some(json!(false)));
        assert_eq!(perturb(&json!([1, 2])), Some(json!([2, 3])));
        assert_eq!(
            perturb(&json!([{"host": "a", "port": 1}, {"host": "b"}])),
            Some(
                json!([{"host": "a-kubectl-gitops-probe", "port": 2}, {"host": "b-kubectl-gitops-probe"}])
            )
        );
        assert_eq!(perturb(&json!([])), Some(json!(["kubectl-gitops-probe"])));
        assert_eq!(perturb(&json!([null])), None);
        assert_eq!(perturb(&json!(null)), None);
        assert_eq!(
            with_value(
                &json!({"a": {"b": 1}, "c": 2}),
                &["a".into(), "b".into()],
                json!(5)
            ),
            json!({"a": {"b": 5}, "c": 2})
        );
        assert_eq!(
            with_value(&json!({}), &["x".into(), "y".into()], json!(1)),
            json!({"x": {"y": 1}})
        );
    }

    #[test]
    fn parameters_are_read_and_changed_as_set_reads_them() {
        assert_eq!(
            parameter_path("image.tag"),
            Some(vec!["image".to_owned(), "tag".to_owned()])
        );
        assert_eq!(
            parameter_path(r"annotations.example\.com/team"),
            Some(vec![
                "annotations".to_owned(),
                "example.com/team".to_owned()
            ])
        );
        assert_eq!(parameter_path("hosts[0].name"), None);
        assert_eq!(parameter_path("a..b"), None);
        assert_eq!(parameter_value("2", false), json!(2));
        assert_eq!(parameter_value("2", true), json!("2"));
        assert_eq!(parameter_value("007", false), json!("007"));
        assert_eq!(parameter_value("True", false), json!(true));
        assert_eq!(parameter_value("null", false), json!(null));
        assert_eq!(perturb_parameter("2", false).as_deref(), Some("3"));
        assert_eq!(perturb_parameter("true", false).as_deref(), Some("false"));
        assert_eq!(
            perturb_parameter("2", true).as_deref(),
            Some("2-kubectl-gitops-probe")
        );
        assert_eq!(perturb_parameter("{a,b}", false), None);
        assert_eq!(perturb_parameter("null", false), None);
    }

    #[test]
    fn a_field_is_the_value_that_changes_it_else_the_charts() {
        let leaf = |name: &str, place: ValuePlace| ValueLeaf {
            path: vec![name.to_owned()],
            place,
        };
        let side = HelmSide {
            rendered: json!({"spec": {"replicas": 2, "port": 80, "image": "nginx:1"}}),
            probes: vec![
                (
                    leaf(
                        "replicas",
                        ValuePlace::Git {
                            file: "release.yaml".into(),
                            line: 7,
                            blame: line("c1", 1),
                            repo: None,
                        },
                    ),
                    json!({"spec": {"replicas": 3, "port": 80, "image": "nginx:1"}}),
                ),
                (
                    leaf(
                        "repo",
                        ValuePlace::Git {
                            file: "values.yaml".into(),
                            line: 1,
                            blame: line("old", 1),
                            repo: None,
                        },
                    ),
                    json!({"spec": {"replicas": 2, "port": 80, "image": "nginx-p:1"}}),
                ),
                (
                    leaf(
                        "tag",
                        ValuePlace::Git {
                            file: "values.yaml".into(),
                            line: 2,
                            blame: line("new", 9),
                            repo: None,
                        },
                    ),
                    json!({"spec": {"replicas": 2, "port": 80, "image": "nginx:1-p"}}),
                ),
                (
                    leaf(
                        "unused",
                        ValuePlace::Cluster {
                            source: "ConfigMap v key values.yaml".into(),
                        },
                    ),
                    json!({"spec": {"replicas": 2, "port": 80, "image": "nginx:1"}}),
                ),
            ],
            chart: "chart web 0.1.0".into(),
            template: "web/templates/d.yaml".into(),
            post: None,
            complete: true,
        };
        let claim = |side: &HelmSide, p: &str| {
            let path = FieldPath::root()
                .child(Segment::Field("spec".into()))
                .child(Segment::Field(p.into()));
            match attribute(side, &path) {
                Some(Claim::Value(l)) => dotted(&l.path),
                Some(Claim::PostRenderer(ValuePlace::Git { line, .. })) => format!("line {line}"),
                Some(Claim::PostRenderer(_)) => "a post-renderer".into(),
                Some(Claim::Chart) => "chart".into(),
                None => "none".into(),
            }
        };
        let at = |p: &str| claim(&side, p);
        assert_eq!(at("replicas"), "replicas");
        assert_eq!(at("port"), "chart");
        // Two values make the image: the one changed last, as git blame would say.
        assert_eq!(at("image"), "tag");
        assert_eq!(at("added-by-someone"), "none");

        // Post-renderers: what one wrote last is its; what none changed is as without them.
        let git = |at: usize| ValuePlace::Git {
            file: "release.yaml".into(),
            line: at,
            blame: line("c2", 2),
            repo: None,
        };
        let bare = side.rendered.clone();
        let patched =
            json!({"spec": {"replicas": 5, "port": 80, "image": "nginx:1", "paused": false}});
        let retagged =
            json!({"spec": {"replicas": 5, "port": 80, "image": "nginx:2", "paused": false}});
        let post = HelmSide {
            probes: side.probes.clone(),
            rendered: retagged.clone(),
            chart: side.chart.clone(),
            template: side.template.clone(),
            post: Some(PostStages {
                bare,
                after: vec![(patched, git(20)), (retagged, git(30))],
            }),
            complete: true,
        };
        assert_eq!(claim(&post, "replicas"), "line 20");
        assert_eq!(claim(&post, "paused"), "line 20");
        assert_eq!(claim(&post, "image"), "line 30");
        assert_eq!(claim(&post, "port"), "chart");
        // A value whose line is unknown changes the port: claimed for nobody.
        let mut unplaced = HelmSide {
            probes: side.probes.clone(),
            rendered: side.rendered.clone(),
            chart: side.chart.clone(),
            template: side.template.clone(),
            post: None,
            complete: true,
        };
        unplaced.probes.push((
            leaf("port", ValuePlace::Unknown),
            json!({"spec": {"replicas": 2, "port": 81, "image": "nginx:1"}}),
        ));
        let port = FieldPath::root()
            .child(Segment::Field("spec".into()))
            .child(Segment::Field("port".into()));
        assert!(attribute(&unplaced, &port).is_none());
        // A value that could not be probed may be what set the port: no claim for the chart.
        let side = HelmSide {
            complete: false,
            ..side
        };
        let path = FieldPath::root()
            .child(Segment::Field("spec".into()))
            .child(Segment::Field("port".into()));
        assert!(attribute(&side, &path).is_none());
    }
}
