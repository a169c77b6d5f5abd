//! Quota periods (SPEC §3): calendar periods in Asia/Shanghai. A yearly benefit resets at
//! 00:00 on 1 January Beijing time; weeks start on Monday (ISO weeks).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
    Year,
    Lifetime,
    Unlimited,
}

impl Period {
    pub const ALL: [Period; 7] =
        [Period::Day, Period::Week, Period::Month, Period::Quarter, Period::Year, Period::Lifetime, Period::Unlimited];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Year => "year",
            Period::Lifetime => "lifetime",
            Period::Unlimited => "unlimited",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The period a moment falls in: a key that names it (`2026`, `2026-Q4`, `2026-11`,
/// `2026-W48`, `2026-11-27`, `lifetime`) and when the next one starts (`None` when it
/// never resets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodWindow {
    pub key: String,
    pub resets_at: Option<DateTime<Utc>>,
}

fn midnight(date: NaiveDate) -> Option<DateTime<Utc>> {
    Some(crate::clock::beijing_midnight(date))
}

pub fn window(period: Period, at: DateTime<Utc>) -> PeriodWindow {
    let local = crate::clock::beijing_date(at);
    let (y, m) = (local.year(), local.month());
    let (key, next_start) = match period {
        Period::Lifetime | Period::Unlimited => return PeriodWindow { key: "lifetime".into(), resets_at: None },
        Period::Day => (crate::clock::day_key(local), local.succ_opt()),
        Period::Week => {
            let iso = local.iso_week();
            let monday = local - Duration::days(i64::from(local.weekday().num_days_from_monday()));
            (format!("{}-W{:02}", iso.year(), iso.week()), Some(monday + Duration::days(7)))
        }
        Period::Month => {
            let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) };
            (format!("{y}-{m:02}"), next)
        }
        Period::Quarter => {
            let q = (m - 1) / 3 + 1;
            let next = if q == 4 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, q * 3 + 1, 1) };
            (format!("{y}-Q{q}"), next)
        }
        Period::Year => (format!("{y}"), NaiveDate::from_ymd_opt(y + 1, 1, 1)),
    };
    PeriodWindow { key, resets_at: next_start.and_then(midnight) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn new_years_eve_in_beijing() {
        let before = window(Period::Year, at("2026-12-31T23:59:59+08:00"));
        let after = window(Period::Year, at("2027-01-01T00:00:00+08:00"));
        assert_eq!(before.key, "2026");
        assert_eq!(after.key, "2027");
        assert_eq!(before.resets_at, Some(at("2027-01-01T00:00:00+08:00")));
        assert_eq!(after.resets_at, Some(at("2028-01-01T00:00:00+08:00")));
    }

    #[test]
    fn a_utc_time_that_is_already_tomorrow_in_beijing() {
        // 16:30 UTC on 31 Dec is 00:30 on 1 Jan in Beijing.
        let w = window(Period::Year, at("2026-12-31T16:30:00Z"));
        assert_eq!(w.key, "2027");
        assert_eq!(window(Period::Day, at("2026-12-31T16:30:00Z")).key, "2027-01-01");
        assert_eq!(window(Period::Day, at("2026-12-31T15:59:59Z")).key, "2026-12-31");
        assert_eq!(window(Period::Month, at("2026-11-30T16:00:00Z")).key, "2026-12");
    }

    #[test]
    fn leap_years() {
        assert_eq!(window(Period::Day, at("2028-02-29T12:00:00+08:00")).resets_at, Some(at("2028-03-01T00:00:00+08:00")));
        assert_eq!(window(Period::Month, at("2028-02-29T23:59:59+08:00")).resets_at, Some(at("2028-03-01T00:00:00+08:00")));
        assert_eq!(window(Period::Month, at("2027-02-28T23:59:59+08:00")).resets_at, Some(at("2027-03-01T00:00:00+08:00")));
    }

    #[test]
    fn iso_weeks_start_on_monday_including_week_53() {
        // 2026-12-31 is a Thursday in ISO week 53 of 2026; the week ends Sunday 2027-01-03.
        let w = window(Period::Week, at("2026-12-31T10:00:00+08:00"));
        assert_eq!(w.key, "2026-W53");
        assert_eq!(w.resets_at, Some(at("2027-01-04T00:00:00+08:00")));
        assert_eq!(window(Period::Week, at("2027-01-03T23:59:59+08:00")).key, "2026-W53");
        assert_eq!(window(Period::Week, at("2027-01-04T00:00:00+08:00")).key, "2027-W01");
        // Sunday night vs Monday morning.
        assert_eq!(window(Period::Week, at("2026-11-29T23:59:59+08:00")).key, "2026-W48");
        assert_eq!(window(Period::Week, at("2026-11-30T00:00:00+08:00")).key, "2026-W49");
    }

    #[test]
    fn quarters() {
        assert_eq!(window(Period::Quarter, at("2026-03-31T23:59:59+08:00")).key, "2026-Q1");
        assert_eq!(window(Period::Quarter, at("2026-04-01T00:00:00+08:00")).key, "2026-Q2");
        assert_eq!(window(Period::Quarter, at("2026-12-01T00:00:00+08:00")).resets_at, Some(at("2027-01-01T00:00:00+08:00")));
    }

    #[test]
    fn lifetime_never_resets() {
        assert_eq!(window(Period::Lifetime, at("2026-01-01T00:00:00Z")), PeriodWindow { key: "lifetime".into(), resets_at: None });
    }
}
