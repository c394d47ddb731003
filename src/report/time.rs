//! Commit times for people: `2026-11-20 10:04 +0100`, or relative (`3h ago`); the API server's
//! RFC 3339 times, written and read.

/// `YYYY-MM-DD HH:MM ±HHMM` in the commit's own offset.
pub fn format_time(unix: i64, offset_seconds: i32) -> String {
    let local = unix + i64::from(offset_seconds);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let off = offset_seconds.unsigned_abs();
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} {sign}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        off / 3600,
        off % 3600 / 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ`: RFC 3339 in UTC, as the API server writes times.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-11-26T07:00:00Z` → Unix seconds (managedFields times are UTC, second precision).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, clock) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (c.next()??, c.next()??, c.next()??);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + s)
}

/// `42s ago`, `5m ago`, `3h ago`, `12d ago`.
pub fn relative(unix: i64, now: i64) -> String {
    let ago = (now - unix).max(0);
    match ago {
        0..60 => format!("{ago}s ago"),
        60..3600 => format!("{}m ago", ago / 60),
        3600..86_400 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86_400),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_git() {
        // git log --date=format:'%Y-%m-%d %H:%M %z' for these instants.
        assert_eq!(format_time(0, 0), "1970-01-01 00:00 +0000");
        assert_eq!(format_time(1_700_000_000, 3600), "2023-11-14 23:13 +0100");
        assert_eq!(
            format_time(1_709_164_800, -18_000),
            "2024-02-28 19:00 -0500"
        );
        assert_eq!(format_time(951_782_400, 0), "2000-02-29 00:00 +0000");
    }

    #[test]
    fn rfc3339_is_utc_with_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // date -u -d @1700000000 +%Y-%m-%dT%H:%M:%SZ
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(100, 130), "30s ago");
        assert_eq!(relative(0, 3 * 3600 + 5), "3h ago");
        assert_eq!(relative(0, 3 * 86_400), "3d ago");
    }

    #[test]
    fn rfc3339_round_trips_with_format_time() {
        let t = parse_rfc3339("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(t, 1_700_000_000);
        assert_eq!(format_time(t, 0), "2023-11-14 22:13 +0000");
        assert_eq!(parse_rfc3339("nonsense"), None);
    }
}
