//! `metadata.managedFields` (FieldsV1) as the API server hands it over: any JSON, read as a
//! whole object and as one entry's `fieldsV1`. Besides not panicking, every error is one line,
//! and every parsed path prints on one line, resolves in the object the way a JSON pointer
//! does, and is owned by the entries that list it.
#![no_main]

use kubectl_gitops::fields::{FieldSet, FieldsError, ManagedFields};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    // serde_json stops at 128 levels, as the client does when it reads a live object.
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Err(error) = FieldSet::parse(&value) {
        one_line(&error);
    }
    check(&value);
    // The same value as one entry's fieldsV1, next to an entry that lists a sibling.
    let object = json!({"metadata": {"managedFields": [
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
        {"manager": "fuzz", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": value},
    ]}});
    check(&object);
});

fn check(object: &Value) {
    let (managed, errors) = ManagedFields::of_lenient(object);
    for error in &errors {
        one_line(error);
    }
    for entry in &managed.entries {
        for path in entry.fields.leaves() {
            let printed = path.to_string();
            assert!(!printed.contains(['\n', '\r']), "{printed:?}");
            if let Some(pointer) = path.to_json_pointer(object) {
                assert_eq!(
                    object.pointer(&pointer),
                    path.get(object),
                    "{printed} {pointer}"
                );
            }
            assert!(
                managed
                    .owners(path)
                    .iter()
                    .any(|owner| std::ptr::eq(*owner, entry)),
                "{printed} is listed by {} but not owned by it",
                entry.manager
            );
        }
    }
    serde_json::to_string(&managed).expect("managed fields serialise");
}

fn one_line(error: &FieldsError) {
    let message = error.to_string();
    assert!(!message.contains(['\n', '\r']), "{message:?}");
}
