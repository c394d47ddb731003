//! Pure drift computation: desired and live in, changed fields out. No I/O.
//!
//! Two ways to find what would change, which must agree:
//! - [`compare_offline`]: the fields desired declares, against live, under Kubernetes'
//!   equivalences and each list's merge semantics from the schema; plus the fields the
//!   reconciler applied before and desired no longer declares (apply would remove them).
//! - [`compare_objects`]: a server-side-apply dry run's result against live.
//!
//! Either way, fields that Git does not declare and that only an out-of-band manager owns come
//! from managedFields ([`out_of_band_additions`]): apply keeps other managers' fields, so no dry
//! run shows them.

use serde_json::Value;

use crate::defaults::{Defaults, is_empty};
use crate::fields::{FieldPath, ManagedEntry, ManagedFields, Segment};
use crate::normalize;
use crate::schema::{ListKind, Node, Shape};

/// One field that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: FieldPath,
    /// What Git (or the dry run) says; None when the field would be absent.
    pub desired: Option<Value>,
    /// What the cluster has; None when absent.
    pub live: Option<Value>,
    /// Fields live sets inside this value and desired leaves out, that are not known server
    /// defaults: offline cannot tell a default the server filled in from an out-of-band
    /// addition (a value compared whole, an omitted list key). Empty when the difference is
    /// proven.
    pub unproven: Vec<FieldPath>,
}

/// The verdict of the offline comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Offline {
    /// Proven: applying desired would change nothing.
    InSync,
    /// These fields differ (a dry run may still explain them away).
    Drifted(Vec<Change>),
}

impl Offline {
    pub fn is_in_sync(&self) -> bool {
        matches!(self, Offline::InSync)
    }
}

/// Compares the fields desired declares with live.
pub fn compare_offline(desired: &Value, live: &Value, schema: Option<Node<'_>>) -> Offline {
    let mut changes = Vec::new();
    let mut desired = desired.clone();
    normalize::strip(&mut desired);
    secret_string_data(&mut desired);
    let kind = desired["kind"].as_str().unwrap_or_default().to_owned();
    let cx = Cx {
        defaults: Defaults::of_kind(&kind),
        out: &mut changes,
    };
    walk(&FieldPath::root(), &desired, Some(live), schema, cx);
    if changes.is_empty() {
        Offline::InSync
    } else {
        Offline::Drifted(changes)
    }
}

/// `stringData` is write-only: the server stores it base64-encoded in `data`. Compare as it
/// would be stored.
pub(crate) fn secret_string_data(desired: &mut Value) {
    if desired["kind"] != "Secret" || desired["apiVersion"] != "v1" {
        return;
    }
    let Some(map) = desired.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            if let Some(text) = v.as_str() {
                data.insert(k, Value::String(base64(text.as_bytes())));
            }
        }
    }
}

/// What the offline walk carries along: the defaults in force, and the changes found.
struct Cx<'a, 'k> {
    defaults: Defaults<'k>,
    out: &'a mut Vec<Change>,
}

impl Cx<'_, '_> {
    fn reborrow(&mut self) -> Cx<'_, '_> {
        Cx {
            defaults: self.defaults,
            out: self.out,
        }
    }
}

fn walk(
    path: &FieldPath,
    desired: &Value,
    live: Option<&Value>,
    node: Option<Node<'_>>,
    mut cx: Cx<'_, '_>,
) {
    let defaults = cx.defaults;
    let shape = node.map(|n| n.shape());
    match desired {
        Value::Object(map) => {
            if map.is_empty() || is_empty(desired) {
                return; // empty and absent are the same to the API server
            }
            let Some(Value::Object(live_map)) = live else {
                cx.out.push(change(path, desired, live));
                return;
            };
            if matches!(shape, Some(Shape::Object { atomic: true })) {
                compare_whole(path, desired, live.expect("checked above"), node, cx);
                return;
            }
            for (key, value) in map {
                let child = path.child(Segment::Field(key.clone()));
                walk(
                    &child,
                    value,
                    live_map.get(key),
                    node.and_then(|n| n.field(key)),
                    cx.reborrow(),
                );
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                if live.is_some_and(|l| !is_empty(l)) {
                    cx.out.push(change(path, desired, live));
                }
                return;
            }
            let Some(Value::Array(live_items)) = live else {
                cx.out.push(change(path, desired, live));
                return;
            };
            let item_node = node.and_then(|n| n.items());
            match shape {
                Some(Shape::List(ListKind::Map { keys })) => {
                    for item in items {
                        let matching: Vec<&Value> = live_items
                            .iter()
                            .filter(|l| keys_match(item, l, &keys, item_node, &defaults))
                            .collect();
                        if let [one] = matching.as_slice() {
                            let child = path.child(key_segment(one, &keys));
                            walk(&child, item, Some(one), item_node, cx.reborrow());
                            continue;
                        }
                        let mut missing = change(&path.child(key_segment(item, &keys)), item, None);
                        missing.unproven =
                            omitted_keys(path, (item, item_node), live_items, &keys, &defaults);
                        cx.out.push(missing);
                    }
                }
                Some(Shape::List(ListKind::Set)) => {
                    for item in items {
                        if !live_items.iter().any(|l| equivalent(item, l, item_node)) {
                            cx.out.push(change(
                                &path.child(Segment::Value(canonical(item))),
                                item,
                                None,
                            ));
                        }
                    }
                }
                _ => compare_whole(path, desired, live.expect("checked above"), node, cx),
            }
        }
        Value::Null => {
            if live.is_some_and(|l| !equivalent(desired, l, node)) {
                cx.out.push(change(path, desired, live));
            }
        }
        scalar => match live {
            Some(l) if equivalent(scalar, l, node) => {}
            _ => cx.out.push(change(path, desired, live)),
        },
    }
}

/// Whether the desired item and a live item agree on every key the desired item sets. A key
/// the desired item leaves out matches the live item's when that is the server's default (a
/// port's protocol is TCP).
fn keys_match(
    desired: &Value,
    live: &Value,
    keys: &[String],
    item: Option<Node<'_>>,
    defaults: &Defaults<'_>,
) -> bool {
    keys.iter().all(|k| match (&desired[k], &live[k]) {
        (Value::Null, Value::Null) => true,
        (Value::Null, l) => live
            .as_object()
            .is_some_and(|parent| defaults.is_default(item, parent, k, l)),
        (d, l) => equivalent(d, l, None),
    })
}

/// For a desired item no live item matches: when exactly one live item agrees on the keys the
/// desired item sets, the keys it leaves out (and live sets) with no default known here may be
/// server defaults we do not know; those keys, at the live item's path. `node` is the items'.
fn omitted_keys(
    path: &FieldPath,
    (item, node): (&Value, Option<Node<'_>>),
    live_items: &[Value],
    keys: &[String],
    defaults: &Defaults<'_>,
) -> Vec<FieldPath> {
    let near: Vec<&Value> = live_items
        .iter()
        .filter(|l| {
            keys.iter()
                .all(|k| item[k].is_null() || equivalent(&item[k], &l[k], None))
        })
        .collect();
    let [one] = near.as_slice() else {
        return Vec::new();
    };
    let Some(parent) = one.as_object() else {
        return Vec::new();
    };
    let at = path.child(key_segment(one, keys));
    keys.iter()
        .filter(|k| item[k.as_str()].is_null() && !one[k.as_str()].is_null())
        .filter(|k| !defaults.knows(node, parent, k))
        .map(|k| at.child(Segment::Field(k.clone())))
        .collect()
}

/// A value desired sets as a whole (an atomic map or list): a change unless live equals it,
/// where live may also hold server defaults desired leaves out. Fields live adds that are not
/// known defaults make the change unproven.
fn compare_whole(
    path: &FieldPath,
    desired: &Value,
    live: &Value,
    node: Option<Node<'_>>,
    cx: Cx<'_, '_>,
) {
    let mut extra = Vec::new();
    let same = covers(path, desired, live, node, &cx.defaults, &mut extra);
    if same && extra.is_empty() {
        return;
    }
    let mut whole = change(path, desired, Some(live));
    // A value that differs somewhere desired speaks is drift, whatever live adds.
    if same {
        whole.unproven = extra;
    }
    cx.out.push(whole);
}

/// Whether live holds everything desired sets, equal under Kubernetes' equivalences, list
/// items in the same places; the fields live adds that are neither empty nor a server default
/// go to `extra`.
fn covers(
    path: &FieldPath,
    desired: &Value,
    live: &Value,
    node: Option<Node<'_>>,
    defaults: &Defaults<'_>,
    extra: &mut Vec<FieldPath>,
) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            let keys: std::collections::BTreeSet<&String> = d.keys().chain(l.keys()).collect();
            keys.into_iter().all(|k| {
                let child = node.and_then(|n| n.field(k));
                let at = || path.child(Segment::Field(k.clone()));
                match (d.get(k), l.get(k)) {
                    (Some(p), Some(q)) => covers(&at(), p, q, child, defaults, extra),
                    (Some(p), None) => is_empty(p),
                    // The server fills in a known default: another value is drift; with none
                    // known, it may still be one.
                    (None, Some(q)) if defaults.is_default(node, l, k, q) => true,
                    (None, Some(_)) if defaults.knows(node, l, k) => false,
                    (None, Some(_)) => {
                        extra.push(at());
                        true
                    }
                    (None, None) => true,
                }
            })
        }
        (Value::Array(d), Value::Array(l)) => {
            let items = node.and_then(|n| n.items());
            d.len() == l.len()
                && d.iter().zip(l).enumerate().all(|(i, (p, q))| {
                    covers(&path.child(Segment::Index(i)), p, q, items, defaults, extra)
                })
        }
        _ => equivalent(desired, live, node),
    }
}

fn key_segment(item: &Value, keys: &[String]) -> Segment {
    Segment::Key(
        keys.iter()
            .filter(|k| !item[k.as_str()].is_null())
            .map(|k| (k.clone(), canonical(&item[k.as_str()])))
            .collect(),
    )
}

fn canonical(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values serialise")
}

fn change(path: &FieldPath, desired: &Value, live: Option<&Value>) -> Change {
    Change {
        path: path.clone(),
        desired: Some(desired.clone()),
        live: live.cloned(),
        unproven: Vec::new(),
    }
}

/// Equality under Kubernetes' equivalences: quantities by value, numbers by value, maps
/// regardless of key order, empty like absent; lists element by element.
pub fn equivalent(a: &Value, b: &Value, node: Option<Node<'_>>) -> bool {
    let shape = node.map(|n| n.shape());
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().all(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => equivalent(p, q, node.and_then(|n| n.field(k))),
                (Some(p), None) | (None, Some(p)) => is_empty(p),
                (None, None) => true,
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            let items = node.and_then(|n| n.items());
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equivalent(p, q, items))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) if x == y => true,
        // A null the manifest sets is deleted by a patch, and stored as the empty string where
        // the object is created with it (a ConfigMap's data key): both are what it asked for.
        (Value::Null, Value::String(s)) | (Value::String(s), Value::Null) => s.is_empty(),
        (Value::String(_) | Value::Number(_), Value::String(_) | Value::Number(_))
            if matches!(shape, Some(Shape::Quantity))
                || (shape.is_none() && looks_like_quantity(a, b)) =>
        {
            match (quantity(a), quantity(b)) {
                (Some(p), Some(q)) => (p - q).abs() <= f64::EPSILON * p.abs().max(q.abs()) * 4.0,
                _ => false,
            }
        }
        _ => a == b,
    }
}

/// Without a schema, two values that both read as quantities with a unit are compared as such
/// (`1Gi` and `1024Mi`); plain numbers and words are not.
fn looks_like_quantity(a: &Value, b: &Value) -> bool {
    let has_unit = |v: &Value| {
        v.as_str().is_some_and(|s| {
            s.ends_with(|c: char| c.is_ascii_alphabetic()) && quantity(v).is_some()
        })
    };
    (has_unit(a) || has_unit(b)) && quantity(a).is_some() && quantity(b).is_some()
}

/// The value of a Kubernetes quantity (`500m`, `0.5`, `1Gi`, `1e3`, `2k`).
pub fn quantity(value: &Value) -> Option<f64> {
    if let Some(n) = value.as_f64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let base: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(base * multiplier)
}

/// The whole-object comparison of a dry run's result with live: every field that differs,
/// bookkeeping removed, lists matched by their keys where the schema gives keys.
pub fn compare_objects(after: &Value, live: &Value, schema: Option<Node<'_>>) -> Vec<Change> {
    let mut a = after.clone();
    let mut l = live.clone();
    normalize::strip(&mut a);
    normalize::strip(&mut l);
    let mut out = Vec::new();
    diff_values(&FieldPath::root(), Some(&a), Some(&l), schema, &mut out);
    out
}

fn diff_values(
    path: &FieldPath,
    after: Option<&Value>,
    live: Option<&Value>,
    node: Option<Node<'_>>,
    out: &mut Vec<Change>,
) {
    match (after, live) {
        (Some(Value::Object(a)), Some(Value::Object(l)))
            if !matches!(
                node.map(|n| n.shape()),
                Some(Shape::Object { atomic: true })
            ) =>
        {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(l.keys()).collect();
            for key in keys {
                diff_values(
                    &path.child(Segment::Field(key.clone())),
                    a.get(key),
                    l.get(key),
                    node.and_then(|n| n.field(key)),
                    out,
                );
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(l))) => {
            let item_node = node.and_then(|n| n.items());
            match node.map(|n| n.shape()) {
                Some(Shape::List(ListKind::Map { keys })) => {
                    let key_of = |v: &Value| key_segment(v, &keys);
                    let mut seen = std::collections::BTreeSet::new();
                    for item in a.iter().chain(l.iter()) {
                        let segment = key_of(item);
                        if !seen.insert(segment.clone()) {
                            continue;
                        }
                        let in_after = a.iter().find(|v| key_of(v) == segment);
                        let in_live = l.iter().find(|v| key_of(v) == segment);
                        diff_values(
                            &path.child(segment.clone()),
                            in_after,
                            in_live,
                            item_node,
                            out,
                        );
                    }
                }
                Some(Shape::List(ListKind::Set)) => {
                    for item in a
                        .iter()
                        .filter(|x| !l.contains(x))
                        .chain(l.iter().filter(|x| !a.contains(x)))
                    {
                        let segment = Segment::Value(canonical(item));
                        let in_after = a.contains(item).then_some(item);
                        let in_live = l.contains(item).then_some(item);
                        out.push(Change {
                            path: path.child(segment),
                            desired: in_after.cloned(),
                            live: in_live.cloned(),
                            unproven: Vec::new(),
                        });
                    }
                }
                _ => {
                    if !equivalent(&Value::Array(a.clone()), &Value::Array(l.clone()), node) {
                        out.push(Change {
                            path: path.clone(),
                            desired: Some(Value::Array(a.clone())),
                            live: Some(Value::Array(l.clone())),
                            unproven: Vec::new(),
                        });
                    }
                }
            }
        }
        (Some(a), Some(l)) => {
            if !equivalent(a, l, node) {
                out.push(Change {
                    path: path.clone(),
                    desired: Some(a.clone()),
                    live: Some(l.clone()),
                    unproven: Vec::new(),
                });
            }
        }
        (a, l) => {
            if a.is_some_and(|v| !is_empty(v)) || l.is_some_and(|v| !is_empty(v)) {
                out.push(Change {
                    path: path.clone(),
                    desired: a.cloned(),
                    live: l.cloned(),
                    unproven: Vec::new(),
                });
            }
        }
    }
}

/// Whether desired declares `path` (the field itself, or lies inside a value desired sets as
/// a whole: an atomic list or a scalar).
pub fn declares(desired: &Value, path: &FieldPath) -> bool {
    path.resolve(desired).is_some()
}

/// The shallowest prefix of `path` that desired does not declare; never `.metadata` or its
/// label and annotation maps as a whole, which hold bookkeeping we ignore: there, one key.
/// None when `path` is one of those maps itself (its keys are reported one by one).
fn first_undeclared(desired: &Value, path: &FieldPath) -> Option<FieldPath> {
    let containers = [".metadata", ".metadata.labels", ".metadata.annotations"];
    let mut prefix = FieldPath::root();
    for segment in path.segments() {
        prefix = prefix.child(segment.clone());
        let container = containers.contains(&prefix.to_string().as_str());
        if !declares(desired, &prefix) && !container {
            return Some(prefix);
        }
    }
    (!containers.contains(&prefix.to_string().as_str())).then_some(prefix)
}

/// Fields the reconciler applied earlier and desired no longer declares, that no other manager
/// also owns: server-side apply would remove them. With `applied` (desired at the commit the
/// reconciler applied), only the fields Git declared there: one it owns that Git did not declare
/// either is the reconciler's own making (Flux writes a Service port's `targetPort` and every
/// struct field of a built-in), and it will make it again.
pub fn dropped_by_reconciler(
    desired: &Value,
    applied: Option<&Value>,
    live: &Value,
    managed: &ManagedFields,
    reconciler: &[String],
) -> Vec<Change> {
    // kubectl's client-side apply prunes by its last-applied annotation, not by what it owns.
    let applied_by = |e: &ManagedEntry| {
        e.manager != "kubectl-client-side-apply"
            && normalize::applied_by_reconciler(&e.manager, &e.operation, reconciler)
    };
    let mut dropped = undeclared_owned(desired, live, managed, &applied_by, &|entry, owner| {
        owner.manager == entry.manager
    });
    if let Some(applied) = applied {
        dropped.retain(|c| declares(applied, &c.path));
    }
    dropped
}

/// Fields Git does not declare that only out-of-band managers own (not the reconciler, not
/// the cluster's own components): a label added with `kubectl label`, a container added with
/// `kubectl patch`. Reported at the shallowest undeclared path.
pub fn out_of_band_additions(
    desired: &Value,
    live: &Value,
    managed: &ManagedFields,
    reconciler: &[String],
) -> Vec<Change> {
    let api_version = live["apiVersion"].as_str().unwrap_or_default();
    let out_of_band = |e: &ManagedEntry| {
        !reconciler.contains(&e.manager)
            && !normalize::SYSTEM_MANAGERS.contains(&e.manager.as_str())
            && !normalize::controls_own_object(&e.manager, api_version)
    };
    // A Secret's `stringData` key declares the `data` key the server stores it in: a manager
    // that patched that value out of band keeps listing it after the value is put back.
    let mut desired = desired.clone();
    secret_string_data(&mut desired);
    undeclared_owned(&desired, live, managed, &out_of_band, &|_, owner| {
        out_of_band(owner)
    })
}

/// The live fields that `selected` managers own, that desired does not declare, and whose every
/// owner passes `sole` (given the selected entry and an owner): reported once each, at the
/// shallowest path desired does not declare, never for always-ignored fields.
fn undeclared_owned(
    desired: &Value,
    live: &Value,
    managed: &ManagedFields,
    selected: &dyn Fn(&ManagedEntry) -> bool,
    sole: &dyn Fn(&ManagedEntry, &ManagedEntry) -> bool,
) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for entry in managed.entries.iter().filter(|e| selected(e)) {
        for leaf in entry.fields.leaves() {
            if declares(desired, leaf) || leaf.get(live).is_none() || is_ignored(leaf, live) {
                continue;
            }
            if !managed.owners(leaf).iter().all(|owner| sole(entry, owner)) {
                continue;
            }
            let Some(top) = first_undeclared(desired, leaf) else {
                continue;
            };
            if is_ignored(&top, live) || out.iter().any(|c| top.starts_with(&c.path)) {
                continue;
            }
            out.retain(|c| !c.path.starts_with(&top));
            out.push(Change {
                path: top.clone(),
                desired: None,
                live: top.get(live).cloned(),
                unproven: Vec::new(),
            });
        }
    }
    out
}

/// The reconciler's bookkeeping labels and annotations (our stamp, Flux's labels, Argo CD's
/// tracking id) are not in Git; when the manager we apply as owns them, an apply without them
/// would remove them (and a Job would take its template's labels instead). They keep their
/// live value in what we apply, for real (revert) or as a dry run.
pub fn keep_bookkeeping(body: &mut Value, live: &Value, managed: &ManagedFields, manager: &str) {
    for section in ["labels", "annotations"] {
        let Some(map) = live["metadata"][section].as_object() else {
            continue;
        };
        for (name, value) in map {
            let pointer = format!("/metadata/{section}/{}", crate::fields::path::escape(name));
            if normalize::always_ignored(&pointer).is_none()
                || !body["metadata"][section][name].is_null()
            {
                continue;
            }
            let path = FieldPath::fields(["metadata", section, name.as_str()]);
            let owned = managed
                .entries
                .iter()
                .any(|e| e.manager == manager && e.operation == "Apply" && e.fields.owns(&path));
            let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
                continue;
            };
            if owned {
                let entries = metadata
                    .entry(section)
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(entries) = entries.as_object_mut() {
                    entries.insert(name.clone(), value.clone());
                }
            }
        }
    }
}

fn is_ignored(path: &FieldPath, live: &Value) -> bool {
    path.to_json_pointer(live)
        .is_some_and(|p: String| normalize::always_ignored(&p).is_some())
}

/// Standard base64 (for Secret `stringData`, compared as stored).
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_shows_no_key_that_holds_a_secret() {
        use crate::fields::Segment;
        let secrets = ["10.9.8.7".to_owned(), "ab".to_owned()];
        let aliases = FieldPath::fields(["spec", "hostAliases"]);
        let by_ip = aliases.child(Segment::key([("ip", &json!("10.9.8.7"))]));
        assert_eq!(
            shown_path(&by_ip.child(Segment::field("ip")), &secrets),
            ".spec.hostAliases[ip=\"(hidden)\"].ip"
        );
        let data = FieldPath::fields(["data", "ab"]);
        assert_eq!(shown_path(&data, &secrets), ".data[\"(hidden)\"]");
        let finalizer =
            FieldPath::fields(["metadata", "finalizers"]).child(Segment::Value("\"ab\"".into()));
        assert!(!shown_path(&finalizer, &secrets).contains("ab"));
        // A short secret only as a whole key; other paths as they are.
        let tier = FieldPath::fields(["data", "about"]);
        assert_eq!(shown_path(&tier, &secrets), tier.to_string());
        assert_eq!(shown_path(&by_ip, &[]), by_ip.to_string());
    }

    #[test]
    fn a_value_holding_a_secret_is_found_whole_or_inside() {
        let secrets = ["hunter2".to_owned(), "ab".to_owned()];
        for shown in [
            json!("hunter2"),
            json!("postgres://u:hunter2@db"),
            json!("ab"),
            json!({"args": ["--password=hunter2"]}),
            json!({"hunter2": "key"}),
        ] {
            assert!(shows_secret(Some(&shown), &secrets), "{shown}");
        }
        for shown in [
            json!("about"),
            json!(12),
            json!(true),
            json!({"tier": "web"}),
        ] {
            assert!(!shows_secret(Some(&shown), &secrets), "{shown}");
        }
        assert!(!shows_secret(None, &secrets));
    }

    #[test]
    fn quantities_compare_by_value() {
        for (a, b) in [
            ("500m", "0.5"),
            ("1Gi", "1024Mi"),
            ("1k", "1000"),
            ("1e3", "1k"),
            ("2", "2000m"),
        ] {
            assert_eq!(quantity(&json!(a)), quantity(&json!(b)), "{a} {b}");
        }
        assert!(equivalent(&json!("500m"), &json!("0.5"), None));
        assert!(!equivalent(&json!("500m"), &json!("0.6"), None));
        // Plain words are not quantities.
        assert!(!equivalent(&json!("web"), &json!("api"), None));
        assert_eq!(quantity(&json!("abc")), None);
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"hunter2"), "aHVudGVyMg==");
    }

    #[test]
    fn offline_ignores_key_order_empties_and_server_defaults() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {}, "annotations": {"x": "1"}}, "data": {"k": "v"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"annotations": {"x": "1"}, "name": "a", "uid": "u", "namespace": "n"},
            "data": {"k": "v"}});
        assert_eq!(compare_offline(&desired, &live, None), Offline::InSync);
        let changed = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "annotations": {"x": "1"}}, "data": {"k": "w"}});
        match compare_offline(&desired, &changed, None) {
            Offline::Drifted(changes) => {
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].path.to_string(), ".data.k");
                assert_eq!(changes[0].live, Some(json!("w")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_null_in_the_manifest_is_absent_or_the_empty_string_live() {
        // `note: {{ .Values.note }}` with no note: created, the server stores ""; patched, the
        // key is deleted.
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
                             "data": {"k": "v", "note": null}});
        for data in [json!({"k": "v", "note": ""}), json!({"k": "v"})] {
            let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "a"}, "data": data});
            assert_eq!(
                compare_offline(&desired, &live, None),
                Offline::InSync,
                "{live}"
            );
        }
        let set = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
                         "data": {"k": "v", "note": "set by hand"}});
        match compare_offline(&desired, &set, None) {
            Offline::Drifted(changes) => {
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].path.to_string(), ".data.note");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secret_string_data_compares_as_stored() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "stringData": {"password": "hunter2"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"});
        assert_eq!(compare_offline(&desired, &live, None), Offline::InSync);
    }

    #[test]
    fn a_secret_value_from_string_data_is_declared() {
        // kubectl-patch set the value out of band; it was put back through stringData, and
        // kubectl-patch still lists `.data.password`: the key is Git's, not an addition.
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "stringData": {"password": "hunter2"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:stringData": {"f:password": {}}}},
                {"manager": "kubectl-patch", "operation": "Update", "apiVersion": "v1",
                 "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:password": {}, "f:added": {}}}}]},
            "data": {"password": "aHVudGVyMg==", "added": "eA=="}});
        let managed = ManagedFields::of(&live).unwrap();
        let extra = out_of_band_additions(&desired, &live, &managed, &["kubectl".into()]);
        let paths: Vec<String> = extra.iter().map(|c| c.path.to_string()).collect();
        assert_eq!(paths, [".data.added"]);
    }

    #[test]
    fn a_field_the_reconciler_made_itself_is_not_dropped_from_git() {
        // kustomize-controller sent `targetPort` (Git has none) and `data.gone` (Git had it at
        // the applied commit, not at the tip).
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "managedFields": [
                {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "v1",
                 "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:kept": {}, "f:gone": {}, "f:made": {}}}}]},
            "data": {"kept": "1", "gone": "2", "made": "3"}});
        let tip = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                         "data": {"kept": "1"}});
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                             "data": {"kept": "1", "gone": "2"}});
        let managed = ManagedFields::of(&live).unwrap();
        let reconciler = ["kustomize-controller".to_owned()];
        let paths = |applied: Option<&Value>| -> Vec<String> {
            dropped_by_reconciler(&tip, applied, &live, &managed, &reconciler)
                .iter()
                .map(|c| c.path.to_string())
                .collect()
        };
        assert_eq!(paths(Some(&applied)), [".data.gone"]);
        // Without the applied commit nothing tells the two apart.
        assert_eq!(paths(None), [".data.gone", ".data.made"]);
    }

    /// A trimmed `/openapi/v3/apis/networking.k8s.io/v1` and `/apis/apps/v1`, with the list and
    /// map types the real ones have: ingress rules and their ports compared whole, a fieldRef an
    /// atomic struct, container ports keyed by port and protocol (protocol published as TCP).
    const SCHEMAS: &str = r##"{"components": {"schemas": {
      "io.k8s.api.networking.v1.NetworkPolicy": {"type": "object", "properties": {
        "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.NetworkPolicySpec"}]}},
        "x-kubernetes-group-version-kind": [{"group": "networking.k8s.io", "kind": "NetworkPolicy", "version": "v1"}]},
      "io.k8s.api.networking.v1.NetworkPolicySpec": {"type": "object", "properties": {
        "ingress": {"type": "array", "x-kubernetes-list-type": "atomic",
          "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.NetworkPolicyIngressRule"}]}},
        "policyTypes": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"}}},
      "io.k8s.api.networking.v1.NetworkPolicyIngressRule": {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "atomic",
          "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.NetworkPolicyPort"}]}}}},
      "io.k8s.api.networking.v1.NetworkPolicyPort": {"type": "object", "properties": {
        "protocol": {"type": "string"}, "endPort": {"type": "integer", "format": "int32"},
        "port": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]}}},
      "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
      "io.k8s.api.core.v1.Pod": {"type": "object", "properties": {
        "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}},
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]},
      "io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {
        "containers": {"type": "array", "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
          "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]}}}},
      "io.k8s.api.core.v1.Container": {"type": "object", "properties": {
        "name": {"type": "string", "default": ""},
        "env": {"type": "array", "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
          "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EnvVar"}]}},
        "ports": {"type": "array", "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "x-kubernetes-list-type": "map",
          "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ContainerPort"}]}}}},
      "io.k8s.api.core.v1.ContainerPort": {"type": "object", "properties": {
        "containerPort": {"type": "integer", "default": 0}, "protocol": {"type": "string", "default": "TCP"}}},
      "io.k8s.api.core.v1.EnvVar": {"type": "object", "properties": {
        "name": {"type": "string", "default": ""},
        "valueFrom": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EnvVarSource"}]}}},
      "io.k8s.api.core.v1.EnvVarSource": {"type": "object", "properties": {
        "fieldRef": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ObjectFieldSelector"}]}}},
      "io.k8s.api.core.v1.ObjectFieldSelector": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {
        "apiVersion": {"type": "string"}, "fieldPath": {"type": "string", "default": ""}}},
      "io.example.v1.Widget": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "rules": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["host", "port"],
          "items": {"type": "object", "properties": {"host": {"type": "string"}, "port": {"type": "integer"}}}}}}},
        "x-kubernetes-group-version-kind": [{"group": "example.io", "kind": "Widget", "version": "v1"}]}
    }}}"##;

    fn schemas() -> crate::schema::Schemas {
        let mut schemas = crate::schema::Schemas::new();
        schemas.add_document("v1", SCHEMAS).unwrap();
        schemas
    }

    fn policy(ports: Value) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p"},
               "spec": {"ingress": [{"ports": ports}]}})
    }

    fn pod(env: Value, ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "env": env, "ports": ports}]}})
    }

    /// Regression (issue 16, defect 4): offline called these server defaults drift.
    #[test]
    fn server_defaults_inside_values_compared_whole_are_not_drift() {
        let s = schemas();
        let np = s.kind("networking.k8s.io", "v1", "NetworkPolicy");
        let pod_node = s.kind("", "v1", "Pod");
        // (desired, live, node)
        let cases = [
            // SetDefaults_NetworkPolicyPort; the server also defaults policyTypes.
            (
                policy(json!([{"port": 80}, {"port": "dns", "protocol": "UDP"}])),
                {
                    let mut live = policy(json!([{"port": 80, "protocol": "TCP"},
                                                 {"port": "dns", "protocol": "UDP"}]));
                    live["spec"]["policyTypes"] = json!(["Ingress"]);
                    live
                },
                np,
            ),
            // SetDefaults_ObjectFieldSelector.
            (
                pod(
                    json!([{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
                    json!([]),
                ),
                pod(
                    json!([{"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}]),
                    json!([]),
                ),
                pod_node,
            ),
            // A list key left out: the published default of ContainerPort.protocol.
            (
                pod(json!([]), json!([{"containerPort": 80}])),
                pod(json!([]), json!([{"containerPort": 80, "protocol": "TCP"}])),
                pod_node,
            ),
        ];
        for (desired, live, node) in cases {
            assert_eq!(
                compare_offline(&desired, &live, node),
                Offline::InSync,
                "{desired}"
            );
        }
    }

    #[test]
    fn what_offline_cannot_prove_says_so_per_field() {
        let s = schemas();
        let np = s.kind("networking.k8s.io", "v1", "NetworkPolicy");
        let pod_node = s.kind("", "v1", "Pod");
        let unproven =
            |desired: &Value, live: &Value, node| match compare_offline(desired, live, node) {
                Offline::Drifted(changes) => changes
                    .iter()
                    .map(|c| {
                        let paths: Vec<String> =
                            c.unproven.iter().map(FieldPath::to_string).collect();
                        (c.path.to_string(), paths)
                    })
                    .collect::<Vec<_>>(),
                Offline::InSync => panic!("{desired} in sync"),
            };
        // Live adds a field that is no known default: maybe a default, maybe out of band.
        assert_eq!(
            unproven(
                &policy(json!([{"port": 80}])),
                &policy(json!([{"port": 80, "protocol": "TCP", "endPort": 90}])),
                np
            ),
            [(
                ".spec.ingress".to_owned(),
                vec![".spec.ingress[0].ports[0].endPort".to_owned()]
            )]
        );
        // A value desired sets differs: drift, whatever live adds.
        assert_eq!(
            unproven(
                &policy(json!([{"port": 80}])),
                &policy(json!([{"port": 81, "endPort": 90}])),
                np
            ),
            [(".spec.ingress".to_owned(), vec![])]
        );
        assert_eq!(
            unproven(
                &policy(json!([{"port": 80}])),
                &policy(json!([{"port": 80, "protocol": "UDP"}])),
                np
            ),
            [(".spec.ingress".to_owned(), vec![])]
        );
        assert_eq!(
            unproven(
                &policy(json!([{"port": 80}])),
                &policy(json!([{"port": 80}, {"port": 81}])),
                np
            ),
            [(".spec.ingress".to_owned(), vec![])]
        );
        // A list key left out whose default is known and differs: another item.
        assert_eq!(
            unproven(
                &pod(json!([]), json!([{"containerPort": 80}])),
                &pod(
                    json!([]),
                    json!([{"containerPort": 80, "protocol": "SCTP"}])
                ),
                pod_node
            ),
            [(
                ".spec.containers[name=c].ports[containerPort=80]".to_owned(),
                vec![]
            )]
        );
        // One with no default known: the only live item that could be it may carry one.
        let widget = |rule: Value| {
            json!({"apiVersion": "example.io/v1", "kind": "Widget",
                                          "metadata": {"name": "w"}, "spec": {"rules": [rule]}})
        };
        assert_eq!(
            unproven(
                &widget(json!({"host": "a"})),
                &widget(json!({"host": "a", "port": 8080})),
                s.kind("example.io", "v1", "Widget")
            ),
            [(
                ".spec.rules[host=a]".to_owned(),
                vec![".spec.rules[host=a,port=8080].port".to_owned()]
            )]
        );
        // Without a schema nothing is known to be a default, and lists are compared whole.
        assert_eq!(
            unproven(
                &policy(json!([{"port": 80}])),
                &policy(json!([{"port": 80, "protocol": "TCP"}])),
                None
            ),
            [(
                ".spec.ingress".to_owned(),
                vec![".spec.ingress[0].ports[0].protocol".to_owned()]
            )]
        );
    }

    #[test]
    fn bookkeeping_the_manager_owns_is_kept() {
        let live = json!({"metadata": {
            "labels": {"kustomize.toolkit.fluxcd.io/name": "apps", "team": "x"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "managedFields": [
                {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {
                     "f:kustomize.toolkit.fluxcd.io/name": {}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {
                     "f:deployment.kubernetes.io/revision": {}}}}}]}});
        let managed = ManagedFields::of(&live).unwrap();
        let mut body = json!({"metadata": {"name": "web"}});
        keep_bookkeeping(&mut body, &live, &managed, "kustomize-controller");
        assert_eq!(
            body["metadata"],
            json!({"name": "web", "labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}})
        );
    }

    #[test]
    fn dry_run_result_compared_with_live() {
        let after =
            json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"replicas": 3}});
        let live = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"replicas": 5}, "status": {}});
        let changes = compare_objects(&after, &live, None);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path.to_string(), ".spec.replicas");
        assert_eq!(
            (changes[0].desired.clone(), changes[0].live.clone()),
            (Some(json!(3)), Some(json!(5)))
        );
    }
}

/// How an object compares with Git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    InSync,
    Drifted,
    /// In Git, not in the cluster.
    Missing,
    /// In the cluster, pointing at a source that no longer declares it.
    Orphaned,
    NoSource,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InSync => "in-sync",
            Status::Drifted => "drifted",
            Status::Missing => "missing",
            Status::Orphaned => "orphaned",
            Status::NoSource => "no-source",
            Status::Error => "error",
        }
    }
}

/// Which comparison decided an object's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Offline,
    DryRun,
}

/// Why a field drifted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Why {
    /// Git changed it after the applied revision; not applied yet.
    #[serde(rename_all = "camelCase")]
    Pending {
        commit: String,
        author: String,
        time: i64,
        subject: String,
    },
    /// A chart repository now offers another chart version for the release's version
    /// constraint (no commit changed anything): installed at the next upgrade.
    #[serde(rename_all = "camelCase")]
    Published {
        chart: String,
        version: String,
        /// `HelmRepository ns/name`.
        source: String,
        /// The version the release has.
        installed: String,
    },
    /// Changed in the cluster: the manager that owns the live value.
    #[serde(rename_all = "camelCase")]
    OutOfBand {
        manager: String,
        operation: String,
        time: Option<String>,
        subresource: Option<String>,
    },
    /// Changed in the cluster by something managedFields does not record (a JSON-patch
    /// removal leaves no trace).
    Unrecorded,
}

impl Why {
    /// Git (or a chart repository the release follows) wants it and the reconciler has not
    /// applied it yet.
    pub fn is_pending(&self) -> bool {
        matches!(self, Why::Pending { .. } | Why::Published { .. })
    }
}

/// One drifted field, as reported. Secret values are already masked here.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldReport {
    pub path: String,
    pub git: Option<Value>,
    pub live: Option<Value>,
    pub why: Why,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_by: Option<String>,
    /// Offline only: the fields live sets inside this one that Git leaves out and that are not
    /// known server defaults. The drift may be nothing but defaults the server filled in; a
    /// dry run (`--server-side=true`) tells.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub may_be_server_default: Vec<String>,
}

/// Where the desired state came from, for report headers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSummary {
    pub repo: String,
    pub file: String,
    pub lines: (usize, usize),
    pub commit: String,
    pub rule: String,
}

impl SourceSummary {
    /// `file:first-last`, or the file alone when it has no lines in Git (a template of a
    /// chart archive).
    pub fn place(&self) -> String {
        match self.lines {
            (0, 0) => self.file.clone(),
            (a, b) => format!("{}:{a}-{b}", self.file),
        }
    }
}

/// One object of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    pub object: crate::object::ObjectKey,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSummary>,
    pub fields: Vec<FieldReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<FieldReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Values Git holds encrypted (SOPS) that could not be decrypted: their keys were
    /// compared, their values not. A note, not drift.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<NotCompared>,
}

/// A value left out of the comparison, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotCompared {
    pub path: String,
    pub reason: String,
}

/// The paths of values encrypted in Git and not decrypted, as the report notes them.
pub fn not_compared(paths: Vec<String>) -> Vec<NotCompared> {
    paths
        .into_iter()
        .map(|path| NotCompared {
            path,
            reason: crate::render::sops::NOT_COMPARED.to_owned(),
        })
        .collect()
}

/// Counts per status, and of ignored fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub in_sync: usize,
    pub drifted: usize,
    pub missing: usize,
    pub orphaned: usize,
    pub no_source: usize,
    pub errors: usize,
    pub ignored_fields: usize,
}

/// The whole `diff` answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// `auto`, `true` or `false`, as `--server-side` was given.
    pub server_side: String,
    pub summary: Summary,
    pub items: Vec<ObjectReport>,
}

impl DriftReport {
    pub fn new(server_side: &str, mut items: Vec<ObjectReport>) -> DriftReport {
        items.sort_by(|a, b| a.object.cmp(&b.object));
        let mut summary = Summary::default();
        for item in &items {
            summary.ignored_fields += item.ignored.len();
            *match item.status {
                Status::InSync => &mut summary.in_sync,
                Status::Drifted => &mut summary.drifted,
                Status::Missing => &mut summary.missing,
                Status::Orphaned => &mut summary.orphaned,
                Status::NoSource => &mut summary.no_source,
                Status::Error => &mut summary.errors,
            } += 1;
        }
        DriftReport {
            server_side: server_side.to_owned(),
            summary,
            items,
        }
    }

    /// Whether anything drifted (exit 1).
    pub fn has_drift(&self) -> bool {
        self.summary.drifted + self.summary.missing + self.summary.orphaned > 0
    }
}

/// The mask shown instead of a Secret value: distinct for Git and live, never the value.
pub fn mask_secret(value: &Option<Value>, side: &str) -> Option<Value> {
    value
        .as_ref()
        .map(|_| Value::String(format!("(hidden {side} value)")))
}

/// How long a value from a Secret must be to be looked for inside a longer string shown in a
/// report; a shorter one is hidden where it is a whole value.
pub const SHOWN_SECRET_MIN: usize = 3;

/// Whether `value` (a field's Git or live value, as a report would show it) holds one of
/// `secrets`: values from Secrets that went into an object that is not a Secret (a Flux
/// `postBuild` variable, a HelmRelease's `valuesFrom` Secret).
pub fn shows_secret(value: Option<&Value>, secrets: &[String]) -> bool {
    let holds = |s: &str| crate::text::holds_secret(s, secrets, SHOWN_SECRET_MIN);
    match value {
        None | Some(Value::Null | Value::Bool(_)) => false,
        Some(Value::String(s)) => holds(s),
        Some(Value::Number(n)) => holds(&n.to_string()),
        Some(Value::Array(items)) => items.iter().any(|v| shows_secret(Some(v), secrets)),
        Some(Value::Object(map)) => map
            .iter()
            .any(|(k, v)| holds(k) || shows_secret(Some(v), secrets)),
    }
}

/// `path` as shown, with each map key, list item key or set value that holds one of `secrets`
/// as `(hidden)`: a value from a Secret may be a key (`hostAliases[ip=...]`).
pub fn shown_path(path: &FieldPath, secrets: &[String]) -> String {
    if secrets.is_empty() {
        return path.to_string();
    }
    hidden_path(path, secrets, false).to_string()
}

/// [`shown_path`] as a path; with `all` (which values came from Secrets is unknown), every
/// list item key and set value is hidden, map keys kept.
pub fn hidden_path(path: &FieldPath, secrets: &[String], all: bool) -> FieldPath {
    use crate::fields::Segment;
    let holds = |text: &str| crate::text::holds_secret(text, secrets, SHOWN_SECRET_MIN);
    // Key and set values are canonical JSON texts.
    let holds_json = |text: &str| {
        all || serde_json::from_str::<Value>(text)
            .map_or_else(|_| holds(text), |v| shows_secret(Some(&v), secrets))
    };
    let hidden_json = || "\"(hidden)\"".to_owned();
    path.segments()
        .iter()
        .map(|segment| match segment {
            Segment::Field(name) if holds(name) => Segment::Field("(hidden)".into()),
            Segment::Key(keys) => Segment::Key(
                keys.iter()
                    .map(|(k, v)| {
                        let v = if holds_json(v) {
                            hidden_json()
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Segment::Value(v) if holds_json(v) => Segment::Value(hidden_json()),
            other => other.clone(),
        })
        .collect()
}

/// Whether `path` of an object of `kind` holds a Secret value.
pub fn is_secret_value(group: &str, kind: &str, path: &FieldPath) -> bool {
    group.is_empty()
        && kind == "Secret"
        && matches!(path.segments().first(), Some(Segment::Field(f)) if f == "data" || f == "stringData")
}
