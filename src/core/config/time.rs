//! Time values in config: RFC 3339 instants (key expiry) and budget windows (`30d`, `1mo`).
//!
//! The core never reads a clock: callers pass `now` as Unix seconds.

use crate::core::config::time_zone::BudgetZone;

/// A budget window as written in `budget_duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    /// A length in seconds (`30s`, `5m`, `1h`, `1d`, `7d`), counted as [`window_bounds`] says.
    Seconds(u64),
    /// A number of calendar months (`1mo`), aligned to the first of the month (local midnight).
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

/// The local day of Monday 1970-01-05 (the epoch was a Thursday): weekly windows without a
/// `budget_reset_at` start at midnight of a Monday, as LiteLLM's weekly resets do.
pub const WEEK_ANCHOR_DAY: i64 = 4;

const DAY: i64 = 86_400;

/// The boundary a window is counted from when its budget has no `budget_reset_at`: local
/// midnight of 1970-01-01 in `zone`, or of Monday 1970-01-05 for whole weeks.
pub fn default_anchor(window: Option<BudgetWindow>, zone: &BudgetZone) -> i64 {
    match window {
        Some(BudgetWindow::Seconds(length)) if length % (7 * DAY as u64) == 0 => {
            zone.instant(WEEK_ANCHOR_DAY, 0)
        }
        _ => zone.instant(0, 0),
    }
}

/// The budget window containing `now`: `[start, end)` in Unix seconds; `end` is `None` for a
/// budget that never resets. `anchor` is a boundary instant (Unix seconds): the budget's
/// `budget_reset_at`, or by default local midnight of 1970-01-01 (of Monday 1970-01-05 for a
/// week) in `zone`. Windows are counted in `zone`'s wall clock, as LiteLLM counts them in
/// `litellm_settings.timezone`:
/// - whole days (`1d`, `7d`, `2w`): every N local days from the anchor's date, at the anchor's
///   wall-clock time (local midnight by default; a 23- or 25-hour day across a DST change);
/// - months (`1mo`, `30d`): the first of a month at local midnight, counted in whole windows
///   from the anchor's month;
/// - shorter than a day (`30s`, `5m`, `1h`): steps of that length from each day's boundary
///   (the anchor's wall-clock time), the last step of a day cut short there, so `1h` is each
///   local hour and `7h` restarts every day as LiteLLM's do;
/// - longer than a day but not whole days (`36h`): steps of that length from the anchor.
pub fn window_bounds(
    window: Option<BudgetWindow>,
    anchor: i64,
    zone: &BudgetZone,
    now: i64,
) -> (i64, Option<i64>) {
    let window = match window {
        None => return (0, None),
        Some(window) => window,
    };
    let (anchor_day, anchor_second) = zone.local(anchor);
    match window {
        BudgetWindow::Seconds(length) => {
            let length = i64::try_from(length).unwrap_or(i64::MAX);
            if length % DAY == 0 {
                let days = length / DAY;
                let (today, _) = zone.local(now);
                let mut index = (today - anchor_day).div_euclid(days);
                if zone.instant(anchor_day + index * days, anchor_second) > now {
                    index -= 1;
                }
                let boundary = |i: i64| zone.instant(anchor_day + i * days, anchor_second);
                (boundary(index), Some(boundary(index + 1)))
            } else if length < DAY {
                let (mut today, _) = zone.local(now);
                if zone.instant(today, anchor_second) > now {
                    today -= 1;
                }
                let day_start = zone.instant(today, anchor_second);
                let day_end = zone.instant(today + 1, anchor_second);
                let start = now - (now - day_start).rem_euclid(length);
                (start, Some(start.saturating_add(length).min(day_end)))
            } else {
                let start = now - now.saturating_sub(anchor).rem_euclid(length);
                (start, Some(start.saturating_add(length)))
            }
        }
        BudgetWindow::Months(months) => {
            let month_index = |day: i64| {
                let (year, month, _) = civil_from_days(day);
                (year - 1970) * 12 + (month - 1)
            };
            let month_start = |i: i64| {
                let day = days_from_civil(1970 + i.div_euclid(12), i.rem_euclid(12) + 1, 1);
                zone.instant(day, 0)
            };
            let mut index = month_index(zone.local(now).0);
            if month_start(index) > now {
                index -= 1;
            }
            let start_index =
                index - (index - month_index(anchor_day)).rem_euclid(i64::from(months));
            let end_index = start_index + i64::from(months);
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
        let utc = BudgetZone::default();
        let now = parse_rfc3339("2026-11-23T04:48:36Z").unwrap();
        let day = parse_budget_window("1d").ok();
        let (start, end) = window_bounds(day, 0, &utc, now);
        assert_eq!(format_rfc3339(start), "2026-11-23T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2026-11-24T00:00:00Z");
        let (start, end) = window_bounds(parse_budget_window("30s").ok(), 0, &utc, now);
        assert_eq!(format_rfc3339(start), "2026-11-23T04:48:30Z");
        assert_eq!(end, Some(start + 30));
        let (start, end) = window_bounds(parse_budget_window("1mo").ok(), 0, &utc, now);
        assert_eq!(format_rfc3339(start), "2026-11-01T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2026-12-01T00:00:00Z");
        let dec = parse_rfc3339("2026-12-31T23:59:59Z").unwrap();
        let (start, end) = window_bounds(parse_budget_window("1mo").ok(), 0, &utc, dec);
        assert_eq!(format_rfc3339(start), "2026-12-01T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2027-01-01T00:00:00Z");
        let (start, end) = window_bounds(parse_budget_window("3mo").ok(), 0, &utc, now);
        assert_eq!(format_rfc3339(start), "2026-10-01T00:00:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2027-01-01T00:00:00Z");
        assert_eq!(window_bounds(None, 0, &utc, now), (0, None));
        // From the budget's own start (LiteLLM's budget_reset_at), not the epoch.
        let reset_at = parse_rfc3339("2026-11-20T15:30:00Z").unwrap();
        let (start, end) = window_bounds(parse_budget_window("7d").ok(), reset_at, &utc, now);
        assert_eq!(format_rfc3339(start), "2026-11-20T15:30:00Z");
        assert_eq!(format_rfc3339(end.unwrap()), "2026-11-27T15:30:00Z");
        let earlier = parse_rfc3339("2026-11-19T00:00:00Z").unwrap();
        let (start, _) = window_bounds(parse_budget_window("7d").ok(), reset_at, &utc, earlier);
        assert_eq!(
            format_rfc3339(start),
            "2026-11-13T15:30:00Z",
            "before the anchor too"
        );
        let (start, end) = window_bounds(parse_budget_window("3mo").ok(), reset_at, &utc, now);
        assert_eq!(
            format_rfc3339(start),
            "2026-11-01T00:00:00Z",
            "months count from its month"
        );
        assert_eq!(format_rfc3339(end.unwrap()), "2027-02-01T00:00:00Z");
    }

    /// `[start, end)` of the window containing `now` (RFC 3339), in `zone`, with the default
    /// anchor the compiler gives (local midnight; a Monday for weeks).
    fn local_window(text: &str, zone: &str, now: &str) -> (String, String) {
        let zone = BudgetZone::named(zone).unwrap();
        let window = parse_budget_window(text).ok();
        let anchor = default_anchor(window, &zone);
        let (start, end) = window_bounds(window, anchor, &zone, parse_rfc3339(now).unwrap());
        (format_rfc3339(start), format_rfc3339(end.unwrap()))
    }

    fn pair(start: &str, end: &str) -> (String, String) {
        (start.to_string(), end.to_string())
    }

    #[test]
    fn windows_follow_the_local_calendar_of_a_zone() {
        // LiteLLM's docs (budget_reset_and_tz): with timezone US/Eastern, daily budgets reset at
        // midnight Eastern, weekly on Monday, monthly on the first.
        let z = "US/Eastern";
        assert_eq!(
            local_window("daily", z, "2026-12-03T03:00:00Z"),
            pair("2026-12-02T05:00:00Z", "2026-12-03T05:00:00Z"),
            "22:00 Eastern on the 2nd is still the 2nd"
        );
        assert_eq!(
            local_window("7d", z, "2026-12-03T12:00:00Z"),
            pair("2026-11-30T05:00:00Z", "2026-12-07T05:00:00Z"),
            "Monday to Monday, Eastern midnight"
        );
        assert_eq!(
            local_window("monthly", z, "2026-12-01T04:59:59Z"),
            pair("2026-11-01T04:00:00Z", "2026-12-01T05:00:00Z"),
            "still November in New York; November began in daylight time"
        );
        assert_eq!(
            local_window("1mo", z, "2026-12-01T05:00:00Z"),
            pair("2026-12-01T05:00:00Z", "2027-01-01T05:00:00Z")
        );
        assert_eq!(
            local_window("1h", "Asia/Kolkata", "2026-12-03T10:10:00Z"),
            pair("2026-12-03T09:30:00Z", "2026-12-03T10:30:00Z"),
            "local hours of a half-hour zone"
        );
        assert_eq!(
            local_window("7h", "UTC", "2026-12-03T22:00:00Z"),
            pair("2026-12-03T21:00:00Z", "2026-12-04T00:00:00Z"),
            "a day's last step is cut at midnight"
        );
        let berlin = BudgetZone::named("Europe/Berlin").unwrap();
        let two_weeks = parse_budget_window("2w").ok();
        let now = parse_rfc3339("2026-12-03T12:00:00Z").unwrap();
        let anchor = default_anchor(two_weeks, &berlin);
        let (start, end) = window_bounds(two_weeks, anchor, &berlin, now);
        let (day, second) = berlin.local(start);
        assert_eq!(
            (day - WEEK_ANCHOR_DAY).rem_euclid(14),
            0,
            "every other Monday"
        );
        assert_eq!(second, 0, "at local midnight");
        assert_eq!(end, Some(start + 14 * DAY));
    }

    #[test]
    fn days_across_dst_changes_are_23_or_25_hours() {
        let z = "Europe/Berlin";
        // Clocks go forward on 2026-03-29 and back on 2026-10-25.
        assert_eq!(
            local_window("1d", z, "2026-03-29T12:00:00Z"),
            pair("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")
        );
        assert_eq!(
            local_window("1d", z, "2026-10-25T12:00:00Z"),
            pair("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")
        );
        assert_eq!(
            local_window("1h", z, "2026-10-25T00:30:00Z"),
            pair("2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z"),
            "the first 02:00-03:00"
        );
        assert_eq!(
            local_window("1h", z, "2026-10-25T01:30:00Z"),
            pair("2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"),
            "the repeated 02:00-03:00 is its own hour"
        );
        // In Havana midnight itself is skipped when clocks go forward: the day starts at 01:00.
        assert_eq!(
            local_window("1d", "America/Havana", "2026-03-08T12:00:00Z"),
            pair("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z")
        );
        // Every instant around the DST changes of 2026 lies in exactly the window it reports,
        // and windows tile time, in zones with 1-hour, 30-minute and no DST changes.
        let changes = ["03-07", "03-27", "04-03", "10-02", "10-23", "10-30"];
        let zones = [
            "US/Eastern",
            "Europe/Berlin",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
        ];
        for zone in zones.map(|name| BudgetZone::named(name).unwrap()) {
            for text in ["1d", "7d", "1mo", "1h", "45m", "36h", "3d"] {
                let window = parse_budget_window(text).ok();
                let anchor = default_anchor(window, &zone);
                for from in changes {
                    let mut t = parse_rfc3339(&format!("2026-{from}T00:00:00Z")).unwrap();
                    let until = t + 4 * DAY;
                    let mut previous: Option<(i64, i64)> = None;
                    while t < until {
                        let (start, end) = window_bounds(window, anchor, &zone, t);
                        let end = end.unwrap();
                        let name = zone.name();
                        assert!(start <= t && t < end, "{name} {text} at {t}");
                        if let Some(previous) = previous {
                            assert!(
                                previous == (start, end) || previous.1 == start,
                                "{name} {text}: windows tile time"
                            );
                        }
                        previous = Some((start, end));
                        t += 599;
                    }
                }
            }
        }
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
