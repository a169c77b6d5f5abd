//! The one source of "now". Tests set it to probe period edges and expiry.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

/// Every calendar rule of the product is in Beijing time.
pub const BEIJING: Tz = chrono_tz::Asia::Shanghai;

#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that only moves when told to.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self { manual: Some(Arc::new(Mutex::new(at))) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock; a system clock ignores it.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Some(at) = &self.manual {
            *at.lock().unwrap_or_else(|p| p.into_inner()) = to;
        }
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

/// The Beijing calendar date of an instant: the day every daily rule of the product counts in.
pub fn beijing_date(at: DateTime<Utc>) -> chrono::NaiveDate {
    at.with_timezone(&BEIJING).date_naive()
}

/// A date as the key stored with redemptions and the statistics rollup (`2026-12-02`).
pub fn day_key(date: chrono::NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The instant a Beijing calendar date begins (Asia/Shanghai has had no DST since 1991, so
/// local midnight is unambiguous): where a day's range of instants starts.
pub fn beijing_midnight(date: chrono::NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone;
    BEIJING
        .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .single()
        .map_or_else(|| date.and_time(chrono::NaiveTime::MIN).and_utc() - Duration::hours(8), |d| d.with_timezone(&Utc))
}
