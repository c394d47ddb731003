//! Desired read from a SOPS-encrypted document, made comparable ([`crate::render::sops`]):
//! decrypted in memory with the user's own `sops` and key, or, without them, stripped of its
//! ciphertext so that only its keys are compared. Decrypted documents are kept in memory for the
//! run (watch evaluates the same object again and again); nothing is written to disk.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::MissingObject;
use crate::drift::{self, ObjectReport, Status};
use crate::object::ObjectKey;
use crate::render::sops::{self, SopsError};
use crate::source::Located;

/// The user's `sops`, what it decrypted, and whether the user was told how to enable it.
#[derive(Default)]
pub(super) struct Decryptor {
    sops: Option<PathBuf>,
    /// By the encrypted document's JSON text: its plaintext, or why there is none.
    decrypted: HashMap<String, Result<Arc<Value>, SopsError>>,
    hinted: bool,
}

impl Decryptor {
    pub(super) fn new(sops: Option<PathBuf>) -> Decryptor {
        Decryptor {
            sops,
            ..Decryptor::default()
        }
    }

    /// Makes desired, as applied and at the tip, free of ciphertext. Returns the paths of the
    /// values not compared (encrypted, and no key to open them), or a one-line error naming
    /// the file, when a document is damaged.
    pub(super) fn located(
        &mut self,
        key: &ObjectKey,
        located: &mut Located,
        live: &Value,
        err: &mut dyn Write,
    ) -> Result<Vec<String>, String> {
        let shared = located
            .desired_at_tip
            .as_ref()
            .is_some_and(|tip| Arc::ptr_eq(tip, &located.desired));
        let mut not_compared = Vec::new();
        if let Some(tip) = located.desired_at_tip.as_mut() {
            not_compared = self.desired(key, tip, &located.tip_place.0, live, err)?;
        }
        if shared {
            if let Some(tip) = &located.desired_at_tip {
                located.desired = tip.clone();
            }
        } else {
            self.desired(key, &mut located.desired, &located.file, live, err)?;
        }
        Ok(not_compared)
    }

    /// [`Decryptor::located`] for one desired object read from `file`.
    pub(super) fn desired(
        &mut self,
        key: &ObjectKey,
        desired: &mut Arc<Value>,
        file: &str,
        live: &Value,
        err: &mut dyn Write,
    ) -> Result<Vec<String>, String> {
        if !sops::is_encrypted(desired) {
            return Ok(Vec::new());
        }
        let text = serde_json::to_string(desired.as_ref()).expect("a JSON value serialises");
        let sops_path = self.sops.as_deref();
        let result = self
            .decrypted
            .entry(text)
            .or_insert_with(|| sops::decrypt(sops_path, desired).map(Arc::new))
            .clone();
        match result {
            Ok(plain) => {
                *desired = plain;
                Ok(Vec::new())
            }
            Err(e) if e.is_missing_key() => {
                self.hint(key, file, &e, err);
                Ok(sops::without_ciphertext(Arc::make_mut(desired), live))
            }
            Err(e) => Err(format!(
                "cannot decrypt {file} with sops: {e}; encrypt the file again with \
                 `sops --encrypt` and push it"
            )),
        }
    }

    /// A missing object's desired, made free of ciphertext as [`Decryptor::desired`] does (with
    /// nothing live to borrow from: revert then refuses it). A damaged document makes the
    /// report an error, said on `err`; returns whether it did.
    pub(super) fn missing(
        &mut self,
        report: &mut ObjectReport,
        missing: &mut MissingObject,
        err: &mut dyn Write,
    ) -> bool {
        let mut desired = Arc::new(std::mem::take(&mut missing.desired));
        let file = report
            .source
            .as_ref()
            .map(|s| s.file.clone())
            .unwrap_or_default();
        let failed = match self.desired(&report.object, &mut desired, &file, &Value::Null, err) {
            Ok(paths) => {
                report.not_compared = drift::not_compared(paths);
                false
            }
            Err(message) => {
                let _ = writeln!(err, "error: {}: {message}", report.object);
                report.status = Status::Error;
                report.error = Some(message);
                true
            }
        };
        missing.desired = Arc::unwrap_or_clone(desired);
        failed
    }

    /// Says once how to have encrypted values compared.
    fn hint(&mut self, key: &ObjectKey, file: &str, why: &SopsError, err: &mut dyn Write) {
        if std::mem::replace(&mut self.hinted, true) {
            return;
        }
        let fix = match why {
            SopsError::NoSops => "install sops (https://github.com/getsops/sops) and run again",
            _ => {
                "give sops your key (SOPS_AGE_KEY_FILE=path/to/keys.txt for age, or your PGP or \
                 KMS access) and run again"
            }
        };
        let _ = writeln!(
            err,
            "note: {key} ({file}) is encrypted with SOPS in Git and {why}: its values are not \
             compared, nor those of other encrypted objects; to compare them, {fix}"
        );
    }
}
