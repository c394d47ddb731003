//! Text helpers every layer shares for what it says in one line: messages from the API server,
//! Git and kustomize arrive with newlines and runs of spaces, and a report line must not break.

/// Collapses a multi-line message into one line.
pub fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The plural ending of a count's noun: `1 object`, `2 objects`.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
