//! A Secret's values, kept out of every message a revert prints: the server may quote them back
//! in an error.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::drift;
use crate::object::ObjectKey;

/// A Secret's values as they could appear in a server message: Git's and live's, plain and
/// base64.
pub(super) fn secret_values(key: &ObjectKey, objects: &[&Value]) -> Vec<String> {
    if !(key.group.is_empty() && key.kind == "Secret") {
        return Vec::new();
    }
    let mut values = BTreeSet::new();
    for object in objects {
        for section in ["data", "stringData"] {
            for value in object[section]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                    values.insert(text.to_owned());
                    values.insert(drift::base64(text.as_bytes()));
                }
            }
        }
    }
    values.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::redact;
    use serde_json::json;

    #[test]
    fn secret_values_never_reach_a_message() {
        let key = ObjectKey {
            group: String::new(),
            kind: "Secret".into(),
            namespace: Some("ns".into()),
            name: "s".into(),
        };
        let desired = json!({"stringData": {"password": "hunter2"}});
        let live = json!({"data": {"password": "Y2hhbmdlZA=="}});
        let secrets = secret_values(&key, &[&desired, &live]);
        let message = "invalid: data[password]: hunter2 / aHVudGVyMg== / Y2hhbmdlZA==";
        assert_eq!(
            redact(message, &secrets),
            "invalid: data[password]: (hidden) / (hidden) / (hidden)"
        );
        let cm = ObjectKey {
            kind: "ConfigMap".into(),
            ..key
        };
        assert!(secret_values(&cm, &[&desired]).is_empty());
    }
}
