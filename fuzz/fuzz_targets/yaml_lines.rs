//! A manifest from the repository, as `blame` reads it: split into documents with their line
//! ranges (`render::documents`), then each document's field paths mapped to lines
//! (`LineIndex::of_document`) and looked up for every field of the parsed object. Besides not
//! panicking, every line named is one of the file's, and a document's own fields are found
//! from its first line on and before the next document.
#![no_main]

use kubectl_gitops::fields::lines::LineIndex;
use kubectl_gitops::fields::{FieldPath, Segment};
use kubectl_gitops::render::{self, RenderError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Paths looked up per document; enough to cover what a small input can hold.
const MAX_PATHS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let lines_in_file = data.split(|b| *b == b'\n').count();
    let docs = match render::documents("apps/fuzz.yaml", data) {
        Ok(docs) => docs,
        Err(RenderError::Yaml { line, .. }) => {
            assert!((1..=lines_in_file).contains(&line), "error at line {line}");
            return;
        }
        Err(_) => return,
    };
    let text = std::str::from_utf8(data).expect("documents() accepted it, so it is UTF-8");
    for doc in &docs {
        let (first, last) = doc.lines;
        assert!(
            1 <= first && first <= last && last <= lines_in_file,
            "{:?}",
            doc.lines
        );
        // A document's range ends at its last line that does not look like a comment, and a
        // `#` line inside a block scalar or a multi-line string is content: so its fields are
        // looked for up to the next document, not up to `last`.
        let end = docs
            .iter()
            .map(|d| d.lines.0)
            .filter(|&f| f > first)
            .min()
            .map_or(lines_in_file, |next| next - 1);
        let Some(index) = LineIndex::of_document(text, doc.lines) else {
            continue;
        };
        let mut paths = Vec::new();
        collect(&doc.object, &FieldPath::root(), &mut paths);
        for path in &paths {
            if let Some(line) = index.line(path) {
                assert!(
                    (first..=end).contains(&line),
                    "{path} at line {line}, outside {first}..={end}"
                );
            }
        }
    }
});

/// Every path into `value` a live object's path could take: fields, indices, `name` keys and
/// set values.
fn collect(value: &Value, path: &FieldPath, out: &mut Vec<FieldPath>) {
    if out.len() >= MAX_PATHS {
        return;
    }
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                let child_path = path.child(Segment::field(name.as_str()));
                out.push(child_path.clone());
                collect(child, &child_path, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut names = vec![Segment::Index(i)];
                match item {
                    Value::Object(map) => {
                        if let Some(name) = map.get("name") {
                            names.push(Segment::key([("name", name)]));
                        }
                    }
                    other => names.push(Segment::value(other)),
                }
                for segment in names {
                    let child_path = path.child(segment);
                    out.push(child_path.clone());
                    collect(item, &child_path, out);
                }
            }
        }
        _ => {}
    }
}
