//! SOPS-encrypted documents from Git are never compared as ciphertext. The user's own `sops`
//! decrypts them in memory, as kustomize-controller does after its kustomize build; without
//! `sops` or a key that opens the document, its encrypted values are left out of the comparison
//! (only which keys there are is compared) and the report says so.
//!
//! kustomize-controller (`internal/decryptor`, `DecryptResource`) decrypts every rendered
//! resource whose top-level `sops` block has a `mac`, as JSON in and JSON out, and does not
//! check the MAC: kustomize has changed the document since it was encrypted (a namespace, a
//! label, the order of keys). We run `sops` the same way. Plaintext is only ever held in memory:
//! the document goes to `sops` on stdin and comes back on its stdout; the render cache keeps the
//! encrypted render, and no message quotes `sops`' own output.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fields::{FieldPath, Segment};

/// What the report says of a value that could not be decrypted.
pub const NOT_COMPARED: &str = "encrypted in Git: not compared";

/// What desired holds in place of an encrypted value the cluster does not have: never the
/// ciphertext.
const PLACEHOLDER: &str = "(encrypted in Git)";

/// sops' exit code when no key it can use opens the document's data key
/// (`cmd/sops/codes.CouldNotRetrieveKey`).
const COULD_NOT_RETRIEVE_KEY: i32 = 128;

/// sops' exit code when a value does not decrypt (`codes.ErrorDecryptingTree`).
const ERROR_DECRYPTING_TREE: i32 = 25;

/// Why a document was not decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    /// No `sops` on PATH.
    #[error("sops is not on PATH")]
    NoSops,
    /// sops found no key of the user's that opens the document.
    #[error("no key of yours opens it")]
    NoKey,
    /// sops ran and failed: a damaged document, a corrupted value. `reason` never quotes
    /// sops' output (it may hold a value).
    #[error("{reason}")]
    Failed { reason: String },
}

impl SopsError {
    /// Whether the document is fine and only the means to open it are missing: the values are
    /// then not compared, and that is no error.
    pub fn is_missing_key(&self) -> bool {
        matches!(self, SopsError::NoSops | SopsError::NoKey)
    }
}

/// Whether `object` is SOPS-encrypted as kustomize-controller tells (`isSOPSEncryptedResource`):
/// a top-level `sops` block with a non-empty `mac`.
pub fn is_encrypted(object: &Value) -> bool {
    object["sops"]["mac"]
        .as_str()
        .is_some_and(|m| !m.is_empty())
}

/// Whether `text` is a value sops encrypted: `ENC[AES256_GCM,data:...,type:...]`.
pub fn is_ciphertext(text: &str) -> bool {
    text.starts_with("ENC[AES256_GCM,") && text.ends_with(']')
}

/// `object` decrypted by `sops` (JSON in and out on pipes, the MAC not checked, as
/// kustomize-controller decrypts), without its `sops` block.
pub fn decrypt(sops: Option<&Path>, object: &Value) -> Result<Value, SopsError> {
    let sops = sops.ok_or(SopsError::NoSops)?;
    let failed = |reason: String| SopsError::Failed { reason };
    let input = serde_json::to_vec(object).expect("a JSON value serialises");
    // `/dev/stdin` works with every sops; Windows has none, and there `sops decrypt` (3.9 and
    // later) reads stdin when no file is named.
    let mut args = vec![
        "--ignore-mac",
        "--input-type",
        "json",
        "--output-type",
        "json",
    ];
    if cfg!(windows) {
        args.insert(0, "decrypt");
    } else {
        args.insert(0, "--decrypt");
        args.push("/dev/stdin");
    }
    let mut child = Command::new(sops)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", sops.display())))?;
    // The document is small; sops reads it whole before it writes anything.
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input);
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("waiting for sops: {e}")))?;
    match output.status.code() {
        Some(0) if written.is_ok() => {}
        Some(0) => return Err(failed("sops did not read the whole document".into())),
        Some(COULD_NOT_RETRIEVE_KEY) => return Err(SopsError::NoKey),
        Some(ERROR_DECRYPTING_TREE) => {
            return Err(failed(
                "a value does not decrypt (corrupted, or edited without sops)".into(),
            ));
        }
        Some(code) => {
            return Err(failed(format!(
                "sops could not read it as an encrypted document (exit {code})"
            )));
        }
        None => return Err(failed("sops was killed by a signal".into())),
    }
    let mut plain: Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| failed("sops gave back something that is not JSON".into()))?;
    // sops drops its block; should one remain, it is not part of the object.
    if let Some(map) = plain.as_object_mut() {
        map.remove("sops");
    }
    Ok(plain)
}

/// `desired` without its `sops` block and without ciphertext: each encrypted value becomes
/// live's value at the same place, so that only whether the key is there is compared (a key
/// live lacks holds a placeholder, and shows as drift). A Secret's `stringData` value is moved
/// to `data`, where live stores it. Returns the paths, as Git writes them, of the values not
/// compared.
pub fn without_ciphertext(desired: &mut Value, live: &Value) -> Vec<String> {
    if let Some(map) = desired.as_object_mut() {
        map.remove("sops");
    }
    let mut paths = Vec::new();
    let secret = desired["kind"] == "Secret" && desired["apiVersion"] == "v1";
    if secret && let Some(Value::Object(string_data)) = desired.get_mut("stringData") {
        let encrypted: Vec<String> = string_data
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(is_ciphertext))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &encrypted {
            string_data.remove(key);
        }
        if string_data.is_empty()
            && let Some(map) = desired.as_object_mut()
        {
            map.remove("stringData");
        }
        for key in encrypted {
            let value = live["data"][&key]
                .as_str()
                .map_or(Value::String(PLACEHOLDER.into()), |v| {
                    Value::String(v.into())
                });
            if let Some(map) = desired.as_object_mut() {
                let data = map
                    .entry("data")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(data) = data.as_object_mut() {
                    data.insert(key.clone(), value);
                }
            }
            paths.push(FieldPath::fields(["stringData", key.as_str()]).to_string());
        }
    }
    replace(&FieldPath::root(), desired, Some(live), &mut paths);
    paths
}

fn replace(path: &FieldPath, desired: &mut Value, live: Option<&Value>, paths: &mut Vec<String>) {
    match desired {
        Value::String(text) if is_ciphertext(text) => {
            *desired = live
                .filter(|l| !l.is_null())
                .cloned()
                .unwrap_or_else(|| Value::String(PLACEHOLDER.into()));
            paths.push(path.to_string());
        }
        Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                let live = live.and_then(|l| l.get(name));
                replace(&path.child(Segment::field(name)), child, live, paths);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let live = live.and_then(|l| l.get(i));
                replace(&path.child(Segment::Index(i)), item, live, paths);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CIPHER: &str = "ENC[AES256_GCM,data:q2w3e4==,iv:aaaa,tag:bbbb,type:str]";

    fn encrypted_secret() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop"},
            "data": {"password": CIPHER, "user": "YWRtaW4="},
            "stringData": {"token": CIPHER},
            "sops": {"mac": CIPHER, "lastmodified": "2026-12-03T10:00:00Z", "version": "3.13.3"}
        })
    }

    #[test]
    fn encrypted_is_what_kustomize_controller_decrypts() {
        assert!(is_encrypted(&encrypted_secret()));
        for plain in [
            json!({"kind": "Secret"}),
            json!({"kind": "Secret", "sops": {"mac": ""}}),
            json!({"kind": "Secret", "sops": {"lastmodified": "x"}}),
            json!({"kind": "Secret", "sops": "mac"}),
        ] {
            assert!(!is_encrypted(&plain), "{plain}");
        }
        assert!(is_ciphertext(CIPHER));
        assert!(!is_ciphertext("ENC[ not sops"));
        assert!(!is_ciphertext("aHVudGVyMg=="));
    }

    #[test]
    fn without_a_key_only_the_keys_are_compared() {
        let live =
            json!({"data": {"password": "aHVudGVyMg==", "token": "dG9r", "user": "YWRtaW4="}});
        let mut desired = encrypted_secret();
        let paths = without_ciphertext(&mut desired, &live);
        assert_eq!(paths, [".stringData.token", ".data.password"]);
        assert_eq!(desired.get("sops"), None);
        assert_eq!(desired.get("stringData"), None);
        // Live's values in place of ciphertext; the unencrypted value is Git's, compared.
        assert_eq!(
            desired["data"],
            json!({"password": "aHVudGVyMg==", "token": "dG9r", "user": "YWRtaW4="})
        );
        assert!(!desired.to_string().contains("ENC["));
    }

    #[test]
    fn a_key_live_lacks_keeps_a_placeholder_never_the_ciphertext() {
        let mut desired = encrypted_secret();
        let paths = without_ciphertext(&mut desired, &json!({"data": {"user": "YWRtaW4="}}));
        assert_eq!(paths.len(), 2);
        assert_eq!(desired["data"]["password"], PLACEHOLDER);
        assert_eq!(desired["data"]["token"], PLACEHOLDER);
        assert!(!desired.to_string().contains("ENC["));
    }

    #[test]
    fn any_kind_and_lists_lose_their_ciphertext() {
        let mut desired = json!({"kind": "ConfigMap", "data": {"a": CIPHER},
            "spec": {"items": ["plain", CIPHER]}, "sops": {"mac": CIPHER}});
        let live = json!({"data": {"a": "x"}, "spec": {"items": ["plain", "y"]}});
        let paths = without_ciphertext(&mut desired, &live);
        assert_eq!(paths, [".data.a", ".spec.items[1]"]);
        assert_eq!(
            desired,
            json!({"kind": "ConfigMap", "data": {"a": "x"}, "spec": {"items": ["plain", "y"]}})
        );
    }

    #[test]
    fn no_sops_is_a_missing_key_not_an_error() {
        assert_eq!(decrypt(None, &encrypted_secret()), Err(SopsError::NoSops));
        assert!(SopsError::NoSops.is_missing_key());
        assert!(SopsError::NoKey.is_missing_key());
        assert!(!SopsError::Failed { reason: "x".into() }.is_missing_key());
    }
}
