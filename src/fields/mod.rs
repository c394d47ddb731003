//! Field paths inside Kubernetes objects, and who owns them: `metadata.managedFields` (FieldsV1)
//! parsed into paths, so `diff`, `blame` and `revert` can name the manager behind a field.

pub mod lines;
pub mod managed;
pub mod path;

pub use managed::{FieldSet, FieldsError, ManagedEntry, ManagedFields};
pub use path::{FieldPath, Segment};
