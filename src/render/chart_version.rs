//! Chart versions and the version constraints a HelmRelease names (`spec.chart.spec.version`),
//! matched as Flux and Helm match them (Masterminds semver v3): `1.2.3`, `1.2.x`, `~1.2`,
//! `^1`, `>=1.0 <2`, `1.2 - 1.4`, `a || b`, `*`; a version with a pre-release passes only a
//! `||` group of which some constraint names one (`>=1.0.0-0 <2.0.0` takes pre-releases), as
//! Masterminds checks them.

use std::cmp::Ordering;

/// A chart's version: `major.minor.patch[-pre][+build]`, an optional leading `v`, missing
/// parts 0 (as Masterminds reads `1.2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    parts: [u64; 3],
    pre: Vec<String>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let (version, _) = parse_partial(text)?;
        Some(version)
    }
}

/// Whether `text` is one exact version, as Masterminds' `StrictNewVersion` reads it: three
/// numeric parts, no leading `v`, and a pre-release or build only after them.
pub fn is_strict(text: &str) -> bool {
    let core = text.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
        && Version::parse(text).is_some()
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.parts.cmp(&other.parts).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver's order of pre-release identifiers: numbers numerically and below words.
fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// A version with how many of its parts were given (a wildcard `x`/`*` ends them).
fn parse_partial(text: &str) -> Option<(Version, usize)> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let text = text.split_once('+').map_or(text, |(v, _)| v);
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => (core, pre.split('.').map(str::to_owned).collect()),
        Some(_) => return None,
        None => (text, Vec::new()),
    };
    let mut parts = [0u64; 3];
    let mut given = 0;
    for (i, part) in core.split('.').enumerate() {
        if i >= 3 {
            return None;
        }
        if matches!(part, "x" | "X" | "*") {
            break;
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[i] = part.parse().ok()?;
        given = i + 1;
    }
    if core.is_empty() {
        return None;
    }
    Some((Version { parts, pre }, given))
}

/// One bound of a range: the version and whether it is included.
type Bound = Option<(Version, bool)>;

/// `[lower, upper)`-style ranges; all of a group must hold, any group may.
#[derive(Debug, Clone)]
struct Range {
    lower: Bound,
    upper: Bound,
    /// `!=`: the range is what a version must not be in.
    negated: bool,
    /// The constraint names a pre-release: versions with one may match its group.
    allows_pre: bool,
}

impl Range {
    /// Whether `v` is in the range; a pre-release only when its group names one.
    fn holds(&self, v: &Version, group_allows_pre: bool) -> bool {
        if !v.pre.is_empty() && !group_allows_pre {
            return false;
        }
        let above = self.lower.as_ref().is_none_or(
            |(l, inclusive)| {
                if *inclusive { v >= l } else { v > l }
            },
        );
        let below = self.upper.as_ref().is_none_or(
            |(u, inclusive)| {
                if *inclusive { v <= u } else { v < u }
            },
        );
        (above && below) != self.negated
    }
}

/// A parsed constraint: any of its groups, each all of its ranges.
#[derive(Debug, Clone)]
pub struct Constraint {
    groups: Vec<Vec<Range>>,
}

impl Constraint {
    /// Parses `text`; an empty one is `*`. The error says which part is not understood.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let text = text.trim();
        let text = if text.is_empty() { "*" } else { text };
        let mut groups = Vec::new();
        for group in text.split("||") {
            let mut ranges = Vec::new();
            let tokens = tokens(group);
            let mut i = 0;
            while i < tokens.len() {
                // `1.2 - 1.4`: a hyphen range.
                if i + 2 < tokens.len() && tokens[i + 1] == "-" {
                    let (low, _) = parse_partial(&tokens[i]).ok_or_else(|| bad(&tokens[i]))?;
                    ranges.push(Range {
                        allows_pre: !low.pre.is_empty(),
                        lower: Some((low, true)),
                        upper: upper_inclusive(&tokens[i + 2])?,
                        negated: false,
                    });
                    i += 3;
                    continue;
                }
                ranges.push(range(&tokens[i])?);
                i += 1;
            }
            if ranges.is_empty() {
                return Err(bad(group.trim()));
            }
            groups.push(ranges);
        }
        Ok(Constraint { groups })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.groups.iter().any(|g| {
            let allows_pre = g.iter().any(|r| r.allows_pre);
            g.iter().all(|r| r.holds(v, allows_pre))
        })
    }
}

fn bad(part: &str) -> String {
    format!("`{part}` is not a version or a version constraint")
}

/// The constraints of one `||` group: split at commas and spaces, an operator joined to the
/// version that follows it (`>= 1.2` is `>=1.2`).
fn tokens(group: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending_op: Option<String> = None;
    for word in group.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
        let is_op = word.chars().all(|c| "=<>!~^".contains(c));
        match (&mut pending_op, is_op) {
            (_, true) => pending_op = Some(word.to_owned()),
            (Some(op), false) => {
                out.push(format!("{op}{word}"));
                pending_op = None;
            }
            (None, false) => out.push(word.to_owned()),
        }
    }
    if let Some(op) = pending_op {
        out.push(op);
    }
    out
}

/// The first version above the given parts: `1.2` → `1.3.0`, `1` → `2.0.0`.
fn next(v: &Version, given: usize) -> Version {
    let mut parts = v.parts;
    match given {
        0 => parts = [u64::MAX, 0, 0],
        1 => parts = [parts[0].saturating_add(1), 0, 0],
        2 => parts = [parts[0], parts[1].saturating_add(1), 0],
        _ => parts = [parts[0], parts[1], parts[2].saturating_add(1)],
    }
    Version {
        parts,
        pre: Vec::new(),
    }
}

/// The upper end of a hyphen range: inclusive when whole, below the next when partial.
fn upper_inclusive(text: &str) -> Result<Bound, String> {
    let (v, given) = parse_partial(text).ok_or_else(|| bad(text))?;
    Ok(if given == 3 {
        Some((v, true))
    } else if given == 0 {
        None
    } else {
        Some((next(&v, given), false))
    })
}

fn range(token: &str) -> Result<Range, String> {
    let op_len = token
        .find(|c: char| !"=<>!~^".contains(c))
        .unwrap_or(token.len());
    let (op, rest) = token.split_at(op_len);
    let (v, given) = parse_partial(rest).ok_or_else(|| bad(token))?;
    let allows_pre = !v.pre.is_empty();
    let exact = given == 3;
    let r = |lower: Bound, upper: Bound| Range {
        lower,
        upper,
        negated: false,
        allows_pre,
    };
    let from = |v: &Version| Some((v.clone(), true));
    let below = |v: Version| Some((v, false));
    Ok(match op {
        // A whole version is itself; a partial one is every version it starts.
        "" | "=" if exact => r(from(&v), Some((v, true))),
        "" | "=" if given == 0 => r(None, None),
        "" | "=" => r(from(&v), below(next(&v, given))),
        "!=" => {
            let mut range = if exact {
                r(from(&v), Some((v, true)))
            } else {
                r(from(&v), below(next(&v, given)))
            };
            range.negated = true;
            range
        }
        ">" if exact => r(Some((v, false)), None),
        ">" => r(from(&next(&v, given)), None),
        ">=" | "=>" => r(from(&v), None),
        "<" => r(None, below(v)),
        "<=" | "=<" if exact => r(None, Some((v, true))),
        "<=" | "=<" => r(None, below(next(&v, given))),
        // ~*, ~0 and ~0.0.0: anything (Masterminds' special case).
        "~" | "~>" if given == 0 || (given == 3 && v.parts == [0, 0, 0] && v.pre.is_empty()) => {
            r(None, None)
        }
        // ~1.2.3 and ~1.2: the same minor; ~1: the same major.
        "~" | "~>" => r(from(&v), below(next(&v, given.clamp(1, 2)))),
        // ^1.2.3: the same major; ^0.2.3: the same minor; ^0.0.3: that patch.
        "^" => {
            let significant = match v.parts {
                [0, 0, _] if given == 3 => 3,
                [0, _, _] if given >= 2 => 2,
                _ => 1,
            };
            r(from(&v), below(next(&v, significant)))
        }
        _ => return Err(bad(token)),
    })
}

/// The version Flux picks among `versions` for `constraint`: the exact string first, then the
/// highest one that matches (ones that are not `major.minor.patch` are skipped, as
/// source-controller skips them).
pub fn pick<'a>(constraint: &str, versions: &[&'a str]) -> Result<Option<&'a str>, String> {
    let wanted = constraint.trim();
    if !wanted.is_empty()
        && let Some(exact) = versions.iter().find(|v| **v == wanted)
    {
        return Ok(Some(exact));
    }
    let c = Constraint::parse(constraint)?;
    Ok(versions
        .iter()
        .filter_map(|v| match parse_partial(v) {
            Some((parsed, 3)) => Some((parsed, *v)),
            _ => None,
        })
        .filter(|(parsed, _)| c.matches(parsed))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [&str; 9] = [
        "0.1.0",
        "0.1.1",
        "0.2.0",
        "1.0.0",
        "1.2.0",
        "1.2.3",
        "1.3.0-rc.1",
        "1.10.0",
        "2.0.0",
    ];

    #[test]
    fn constraints_pick_as_flux_does() {
        for (constraint, picked) in [
            ("", Some("2.0.0")),
            ("*", Some("2.0.0")),
            ("1.2.3", Some("1.2.3")),
            ("v1.2.3", Some("1.2.3")),
            ("1.2", Some("1.2.3")),
            ("1.2.x", Some("1.2.3")),
            ("1.x", Some("1.10.0")),
            ("~1.2.0", Some("1.2.3")),
            ("~1", Some("1.10.0")),
            ("^1.2", Some("1.10.0")),
            ("^0.1.0", Some("0.1.1")),
            ("^0.0.1", None),
            (">=1.0.0 <1.3.0", Some("1.2.3")),
            (">= 1.0, < 1.3", Some("1.2.3")),
            (">1.2", Some("2.0.0")),
            ("<=1.2", Some("1.2.3")),
            ("<1.2", Some("1.0.0")),
            ("1.0 - 1.2", Some("1.2.3")),
            ("1.0.0 - 1.2.0", Some("1.2.0")),
            ("0.1.x || >=3", Some("0.1.1")),
            ("!=2.0.0", Some("1.10.0")),
            ("3.x", None),
            // A pre-release only when a constraint of its `||` group names one.
            ("~1.3.0-rc.0", Some("1.3.0-rc.1")),
            (">=1.3.0-rc.0 <1.4.0", Some("1.3.0-rc.1")),
            (">=1.3.0-0 <1.4.0", Some("1.3.0-rc.1")),
            (">=1.2.5 <1.4.0", None),
            ("<1.0.0 || >=1.3.0-0 <1.4.0", Some("1.3.0-rc.1")),
            ("1.3.0-rc.0 - 1.3.0 || 0.1.x", Some("1.3.0-rc.1")),
            // `~0.0.0` and `~*` are anything; `~0` the same major, `~0.0` the same minor.
            ("~0.0.0", Some("2.0.0")),
            ("~*", Some("2.0.0")),
            ("~0", Some("0.2.0")),
            ("~0.1", Some("0.1.1")),
        ] {
            assert_eq!(pick(constraint, &VERSIONS), Ok(picked), "{constraint:?}");
        }
    }

    #[test]
    fn an_exact_string_wins_and_nonsense_is_refused() {
        assert_eq!(pick("latest", &["latest", "1.0.0"]), Ok(Some("latest")));
        assert!(
            pick("one.two", &VERSIONS)
                .unwrap_err()
                .contains("`one.two`")
        );
        assert!(pick(">=", &VERSIONS).is_err());
        // Versions of fewer than three parts are skipped, as source-controller skips them.
        assert_eq!(pick("*", &["1.2", "1.1.0"]), Ok(Some("1.1.0")));
        // An empty constraint is `*`, not the index entry without a version.
        assert_eq!(pick("", &["", "1.1.0"]), Ok(Some("1.1.0")));
        assert_eq!(pick(">=18446744073709551615", &VERSIONS), Ok(None));
    }

    #[test]
    fn versions_order_as_semver_says() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10.0") > v("1.9.0"));
        assert!(v("1.0.0-rc.2") < v("1.0.0"));
        assert!(v("1.0.0-rc.2") < v("1.0.0-rc.10"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("1.2.0+build.5"), v("1.2.0"));
        assert!(Version::parse("1.2.3.4").is_none());
    }

    #[test]
    fn an_exact_version_is_strict_semver() {
        for exact in ["0.1.0", "1.2.3-rc.1", "1.2.3+build.5", "10.0.0"] {
            assert!(is_strict(exact), "{exact}");
        }
        for not in [
            "1.2", "v1.2.3", "1.2.x", "^1.2.3", "*", ">=1.0.0", "01.2.3", "",
        ] {
            assert!(!is_strict(not), "{not}");
        }
    }
}
