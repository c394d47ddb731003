//! The JSON patch that removes the fields Git does not declare: pointers that never shift
//! each other.

use serde_json::Value;

use crate::fields::FieldPath;

/// RFC 6901 pointers for the removals, resolved in `object`, ordered so that removing one
/// never shifts the index of another (later list items first), none inside another.
pub(super) fn removal_pointers(removals: &[FieldPath], object: &Value) -> Vec<String> {
    let mut pointers: Vec<String> = removals
        .iter()
        .filter_map(|p| p.to_json_pointer(object))
        .filter(|p| !p.is_empty())
        .collect();
    pointers.sort_by_key(|p| pointer_order(p));
    pointers.dedup();
    let mut kept: Vec<String> = Vec::new();
    for p in pointers {
        if !kept.iter().any(|k| p.starts_with(&format!("{k}/"))) {
            kept.push(p);
        }
    }
    kept.sort_by_key(|p| std::cmp::Reverse(pointer_order(p)));
    kept
}

/// Pointer segments, numbers compared as numbers.
fn pointer_order(pointer: &str) -> Vec<(u64, String)> {
    pointer
        .split('/')
        .map(|s| match s.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, s.to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Segment;
    use serde_json::json;

    fn path(text: &[&str]) -> FieldPath {
        FieldPath::fields(text.iter().copied())
    }

    #[test]
    fn removals_never_shift_each_other() {
        let object = json!({"metadata": {"labels": {"a/b": "x", "team": "y"}},
            "spec": {"containers": [{"name": "web"}, {"name": "one"}, {"name": "two"}],
                     "env": [1, 2]}});
        let key = |name: &str| {
            path(&["spec", "containers"]).child(Segment::key([("name", &json!(name))]))
        };
        let removals = vec![
            key("one"),
            key("two"),
            path(&["metadata", "labels", "a/b"]),
            path(&["spec", "env"]),
            // Inside a removed field: dropped.
            key("two").child(Segment::field("image")),
            // Not there: dropped.
            key("three"),
        ];
        assert_eq!(
            removal_pointers(&removals, &object),
            [
                "/spec/env",
                "/spec/containers/2",
                "/spec/containers/1",
                "/metadata/labels/a~1b"
            ]
        );
        // Index 10 sorts after index 9 (as a number, not as text).
        let many = json!({"l": (0..11).map(|i| json!({"n": i})).collect::<Vec<_>>()});
        let removals: Vec<FieldPath> = [9, 10]
            .iter()
            .map(|i| path(&["l"]).child(Segment::key([("n", &json!(i))])))
            .collect();
        assert_eq!(removal_pointers(&removals, &many), ["/l/10", "/l/9"]);
    }
}
