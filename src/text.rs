//! Text helpers every layer shares for what it says in one line: messages from the API server,
//! Git and kustomize arrive with newlines and runs of spaces, and a report line must not break.

use std::time::Duration;

/// Collapses a multi-line message into one line.
pub fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tool's stderr as one line: its non-empty lines, trimmed, joined with `; `. The klog
/// header kubectl writes (`E1207 16:42:26.780823 309 run.go:72] `) is dropped, and its
/// `"command failed" err="..."` gives the error itself, as does its multi-line form (`err=<`,
/// the error's lines each after a tab, ` >`): one failure reads the same each time.
pub fn joined_lines(text: &str) -> String {
    let mut parts = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let part = without_klog_header(line.trim());
        if part == "\"command failed\" err=<" {
            for inner in lines.by_ref() {
                if inner == " >" {
                    break;
                }
                parts.push(inner.strip_prefix('\t').unwrap_or(inner).trim().to_owned());
            }
            continue;
        }
        parts.push(part);
    }
    parts.retain(|p| !p.is_empty());
    parts.join("; ")
}

fn without_klog_header(line: &str) -> String {
    let rest = match line.split_once("] ") {
        Some((header, rest)) if is_klog_header(header) => rest,
        _ => line,
    };
    let quoted = rest
        .strip_prefix("\"command failed\" err=\"")
        .and_then(|r| r.strip_suffix('"'));
    match quoted.and_then(go_unquoted) {
        Some(error) => error
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        None => rest.to_owned(),
    }
}

/// The text a Go-quoted string (`strconv.Quote`, as klog writes values; without its quotes)
/// stands for, other control characters than newlines as spaces; `None` when it is not one.
fn go_unquoted(quoted: &str) -> Option<String> {
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        let escape = chars.next()?;
        let mut code = |digits: usize, radix: u32, first: Option<char>| {
            let mut n = first.map_or(Some(0), |d| d.to_digit(radix))?;
            for _ in 0..digits {
                n = n * radix + chars.next()?.to_digit(radix)?;
            }
            char::from_u32(n)
        };
        let decoded = match escape {
            'n' => '\n',
            'a' | 'b' | 'f' | 'r' | 't' | 'v' => ' ',
            e @ ('\\' | '"' | '\'') => e,
            'x' => code(2, 16, None)?,
            'u' => code(4, 16, None)?,
            'U' => code(8, 16, None)?,
            d @ '0'..='7' => code(2, 8, Some(d))?,
            _ => return None,
        };
        text.push(if decoded.is_control() && decoded != '\n' {
            ' '
        } else {
            decoded
        });
    }
    Some(text)
}

/// `E1207 16:42:26.780823 309 run.go:72`: severity and date, time, thread, file and line.
fn is_klog_header(header: &str) -> bool {
    let digits = |s: &str, more: &[u8]| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || more.contains(&b))
    };
    let parts: Vec<&str> = header.split_whitespace().collect();
    let [level_date, time, thread, file] = parts[..] else {
        return false;
    };
    level_date.len() == 5
        && level_date.starts_with(['I', 'W', 'E', 'F'])
        && digits(&level_date[1..], b"")
        && digits(time, b":.")
        && digits(thread, b"")
        && file.contains(".go:")
}

/// The plural ending of a count's noun: `1 object`, `2 objects`.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A duration as flags take it: `1m`, `30s`, `1m30s`, `500ms`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 && ms > 0 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// Standard base64 to bytes (Secret data, Helm release records; never printed).
pub fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// Whether `s` is one of `secrets`, or holds one of at least `min` characters inside it (a
/// shorter one is part of too many strings by chance to be told from it).
pub fn holds_secret(s: &str, secrets: &[String], min: usize) -> bool {
    secrets
        .iter()
        .any(|x| !x.is_empty() && (s == x || (x.chars().count() >= min && s.contains(x.as_str()))))
}

/// `message` with every secret replaced by `(hidden)`, longest first so that no part of one
/// shows; a secret of several lines is also replaced line by line (a tool may quote one line,
/// or join its lines).
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for secret in secrets {
        parts.push(secret);
        if secret.contains('\n') {
            parts.extend(secret.lines().map(str::trim));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut text = message.to_owned();
    for part in parts {
        text = text.replace(part, "(hidden)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_errors_read_the_same_each_time() {
        let stderr = "E1207 16:42:26.780823     309 run.go:72] \"command failed\" \
                      err=\"accumulating resources from 'broken.yaml': \\\"x\\\" bad\"\n";
        assert_eq!(
            joined_lines(stderr),
            "accumulating resources from 'broken.yaml': \"x\" bad"
        );
        assert_eq!(
            joined_lines(
                "W0101 00:00:00.000001 1 warnings.go:70] deprecated\nerror: no such file\n"
            ),
            "deprecated; error: no such file"
        );
        // Newlines, tabs and escaped characters of the quoted error.
        assert_eq!(
            joined_lines(
                "E1207 16:42:26.780823 309 run.go:72] \"command failed\" \
                 err=\"map[string]interface {}(nil): yaml: line 3:\\n\\tfound \\u00e9 \\\\x\"\n"
            ),
            "map[string]interface {}(nil): yaml: line 3:; found \u{e9} \\x"
        );
        // The multi-line form klog writes an error with a newline in.
        assert_eq!(
            joined_lines(
                "E1208 01:11:18.555410    9751 run.go:72] \"command failed\" err=<\n\
                 \tmap[string]interface {}(nil): yaml: line 3:\n\
                 \t  found character that cannot start any token\n \
                 >\nerror: after\n"
            ),
            "map[string]interface {}(nil): yaml: line 3:; found character that cannot start \
             any token; error: after"
        );
        // Not a klog header: kept as it is.
        assert_eq!(joined_lines("[x] y] z"), "[x] y] z");
        assert_eq!(joined_lines("Error: chart] failed"), "Error: chart] failed");
    }

    #[test]
    fn a_secret_is_hidden_whole_and_line_by_line() {
        let secrets = [
            "hunter2".to_owned(),
            "-----BEGIN KEY-----\nAAAA\n-----END KEY-----".to_owned(),
        ];
        assert_eq!(
            redact("bad password hunter2 (hunter22)", &secrets),
            "bad password (hidden) ((hidden)2)"
        );
        assert_eq!(
            redact("cannot parse -----BEGIN KEY-----; AAAA", &secrets),
            "cannot parse (hidden); (hidden)"
        );
        assert_eq!(
            redact("nothing to hide", &[String::new()]),
            "nothing to hide"
        );
    }

    #[test]
    fn durations_read_like_flags() {
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
        assert_eq!(duration(Duration::from_secs(1)), "1s");
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_secs(60)), "1m");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_secs(7260)), "2h1m");
    }
}
