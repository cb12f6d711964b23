//! Time values in config: RFC 3339 instants (key expiry) and budget windows (`30d`, `1mo`).
//!
//! The core never reads a clock: callers pass `now` as Unix seconds.

/// A budget window as written in `budget_duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    /// A fixed number of seconds (`30s`, `5m`, `1h`, `1d`, `7d`), counted from an anchor (the Unix
    /// epoch; Monday 1970-01-05 for a week; or the budget's `budget_reset_at`).
    Seconds(u64),
    /// A number of calendar months (`1mo`), aligned to the first of the month, UTC.
    Months(u32),
}

/// LiteLLM's word spellings of a `budget_duration` and what they stand for (litellm 1.109.1,
/// `litellm_core_utils/duration_parser.py`); its resets then treat `30d` as a calendar month and
/// `7d` as a week from Monday (see [`parse_budget_window`]).
const DURATION_WORDS: [(&str, &str); 4] = [
    ("hourly", "1h"),
    ("daily", "24h"),
    ("weekly", "7d"),
    ("monthly", "30d"),
];

/// Parses `budget_duration`: a positive whole number followed by `s`, `m`, `h`, `d`, `w` or `mo`,
/// or one of LiteLLM's words (`hourly`, `daily`, `weekly`, `monthly`, any case). As LiteLLM's
/// standardized resets do, `30d` (and `monthly`) is a calendar month, starting on the first.
pub fn parse_budget_window(text: &str) -> Result<BudgetWindow, String> {
    let word = text.trim().to_ascii_lowercase();
    let text = DURATION_WORDS
        .iter()
        .find(|(name, _)| *name == word)
        .map_or(text, |(_, duration)| duration);
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (use s, m, h, d, w or mo, e.g. 30d)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} must start with a whole number"))?;
    if n == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    if (n, unit) == (30, "d") {
        return Ok(BudgetWindow::Months(1));
    }
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mo" => {
            let months = u32::try_from(n).map_err(|_| format!("{text:?} is too long"))?;
            return Ok(BudgetWindow::Months(months));
        }
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (use s, m, h, d, w or mo)"
            ))
        }
    };
    n.checked_mul(seconds_per_unit)
        .map(BudgetWindow::Seconds)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Parses an RFC 3339 instant (`2026-12-31T23:59:59Z`, `…+02:00`, fractional seconds allowed)
/// into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an RFC 3339 date-time such as 2026-12-31T23:59:59Z");
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return Err(bad());
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes[16] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(range).ok_or_else(bad)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let off = &rest[1..];
            if off.as_bytes().get(2) != Some(&b':') {
                return Err(bad());
            }
            let h: i64 = off[..2].parse().map_err(|_| bad())?;
            let m: i64 = off[3..].parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Where weekly windows start without a `budget_reset_at`: Monday 1970-01-05 00:00 UTC (the epoch
/// was a Thursday), as LiteLLM's weekly resets land on Mondays.
pub const WEEK_ANCHOR: i64 = 4 * 86_400;

/// The budget window containing `now`: `[start, end)` in Unix seconds; `end` is `None` for a
/// budget that never resets. Windows are counted from `anchor` (a boundary instant, Unix
/// seconds: 0 for the epoch, or the budget's `budget_reset_at`, as LiteLLM counts from a
/// budget's own start). Second-based windows are multiples of their length from the anchor (so
/// `1d` from the epoch resets at 00:00 UTC); month windows start on the first of a month, UTC,
/// counted in whole windows from the anchor's month.
pub fn window_bounds(window: Option<BudgetWindow>, anchor: i64, now: i64) -> (i64, Option<i64>) {
    match window {
        None => (0, None),
        Some(BudgetWindow::Seconds(length)) => {
            let length = i64::try_from(length).unwrap_or(i64::MAX);
            let start = now - now.saturating_sub(anchor).rem_euclid(length);
            (start, Some(start.saturating_add(length)))
        }
        Some(BudgetWindow::Months(months)) => {
            let month_index = |t: i64| {
                let (year, month, _) = civil_from_days(t.div_euclid(86_400));
                (year - 1970) * 12 + (month - 1)
            };
            let index = month_index(now);
            let start_index = index - (index - month_index(anchor)).rem_euclid(i64::from(months));
            let end_index = start_index + i64::from(months);
            let month_start =
                |i: i64| days_from_civil(1970 + i.div_euclid(12), i.rem_euclid(12) + 1, 1) * 86_400;
            (month_start(start_index), Some(month_start(end_index)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn budget_windows_align_to_utc_and_calendar_months() {
        let now = parse_rfc3339("2026-11-23T04:48:36Z").unwrap();
        let day = parse_budget_window("1d").ok();
        let (start, end) = window_bounds(day, 0, now);
        assert_eq!(format_rfc3339(start), "2026-11-23T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2026-11-24T00:00:00Z");
        let (start, end) = window_bounds(parse_budget_window("30s").ok(), 0, now);
        assert_eq!(format_rfc3339(start), "2026-11-23T04:48:30Z");
        assert_eq!(end, Some(start + 30));
        let (start, end) = window_bounds(parse_budget_window("1mo").ok(), 0, now);
        assert_eq!(format_rfc3339(start), "2026-11-01T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2026-12-01T00:00:00Z");
        let dec = parse_rfc3339("2026-12-31T23:59:59Z").unwrap();
        let (start, end) = window_bounds(parse_budget_window("1mo").ok(), 0, dec);
        assert_eq!(format_rfc3339(start), "2026-12-01T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2027-01-01T00:00:00Z");
        let (start, end) = window_bounds(parse_budget_window("3mo").ok(), 0, now);
        assert_eq!(format_rfc3339(start), "2026-10-01T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2027-01-01T00:00:00Z");
        assert_eq!(window_bounds(None, 0, now), (0, None));
        // From the budget's own start (LiteLLM's budget_reset_at), not the epoch.
        let reset_at = parse_rfc3339("2026-11-20T15:30:00Z").unwrap();
        let (start, end) = window_bounds(parse_budget_window("7d").ok(), reset_at, now);
        assert_eq!(format_rfc3339(start), "2026-11-20T15:30:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2026-11-27T15:30:00Z");
        let earlier = parse_rfc3339("2026-11-19T00:00:00Z").unwrap();
        let (start, _) = window_bounds(parse_budget_window("7d").ok(), reset_at, earlier);
        assert_eq!(
            format_rfc3339(start),
            "2026-11-13T15:30:00Z",
            "before the anchor too"
        );
        let (start, end) = window_bounds(parse_budget_window("3mo").ok(), reset_at, now);
        assert_eq!(
            format_rfc3339(start),
            "2026-11-01T00:00:00Z",
            "months count from its month"
        );
        assert_eq!(format_rfc3339(end.unwrap()), "2027-02-01T00:00:00Z");
    }

    #[test]
    fn parses_utc_and_offset_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-23T01:00:00Z"), Ok(1_795_395_600));
        assert_eq!(
            parse_rfc3339("2026-11-23T03:00:00+02:00"),
            Ok(1_795_395_600)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T01:00:00.123456Z"),
            Ok(1_795_395_600)
        );
    }

    #[test]
    fn refuses_dates_that_are_not_rfc3339() {
        for bad in [
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "tomorrow",
            "2026-11-23T01:00:00",
            "2026-11-23T01:00:00+0200",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_back_to_the_same_instant() {
        assert_eq!(format_rfc3339(1_795_395_600), "2026-11-23T01:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn budget_windows_parse_all_units() {
        assert_eq!(parse_budget_window("30s"), Ok(BudgetWindow::Seconds(30)));
        assert_eq!(parse_budget_window("5m"), Ok(BudgetWindow::Seconds(300)));
        assert_eq!(parse_budget_window("1h"), Ok(BudgetWindow::Seconds(3600)));
        assert_eq!(
            parse_budget_window("7d"),
            Ok(BudgetWindow::Seconds(604_800))
        );
        assert_eq!(parse_budget_window("1mo"), Ok(BudgetWindow::Months(1)));
        assert_eq!(
            parse_budget_window("Monthly"),
            Ok(BudgetWindow::Months(1)),
            "as LiteLLM"
        );
        assert_eq!(
            parse_budget_window("30d"),
            Ok(BudgetWindow::Months(1)),
            "as LiteLLM"
        );
        assert_eq!(
            parse_budget_window("31d"),
            Ok(BudgetWindow::Seconds(31 * 86_400))
        );
        assert_eq!(
            parse_budget_window("daily"),
            Ok(BudgetWindow::Seconds(86_400))
        );
        assert_eq!(parse_budget_window("weekly"), parse_budget_window("7d"));
        assert_eq!(parse_budget_window("hourly"), parse_budget_window("1h"));
        for bad in ["", "d", "0d", "1y", "-1d", "1.5d"] {
            assert!(parse_budget_window(bad).is_err(), "{bad}");
        }
    }
}
