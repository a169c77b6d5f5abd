//! A circuit breaker around the shared store. A hung Redis (a stopped process, a
//! partition) answers nothing until the response timeout; without a breaker every request
//! would wait that long. After [`TRIP_AFTER`] failures in a row the breaker opens: callers
//! get [`super::CacheError::CircuitOpen`] at once and use their fallback (the database, or
//! this instance's own store), and one background task pings Redis every
//! [`PROBE_EVERY`] until it answers, then closes the breaker.
//!
//! Falling back is always safe, since Redis is only a cache (see [`super`]); the breaker
//! only decides how quickly the fallback is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

/// Failures in a row (timeouts, refused connections, a cluster that is down) that open it.
pub const TRIP_AFTER: u32 = 3;
/// How often the background probe asks Redis while the breaker is open.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

pub struct Breaker {
    failures_in_a_row: AtomicU32,
    open: AtomicBool,
    probing: AtomicBool,
    trips: IntCounter,
    open_gauge: IntGauge,
}

impl Breaker {
    pub fn new(trips: IntCounter, open_gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            failures_in_a_row: AtomicU32::new(0),
            open: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            trips,
            open_gauge,
        })
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn succeeded(&self) {
        // Read first: most calls find it at zero, and a store would make every call
        // write the cache line that all workers read.
        if self.failures_in_a_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; true when this one opened the breaker and the caller must start
    /// the probe (see [`Self::start_probing`]).
    pub fn failed(&self) -> bool {
        let n = self.failures_in_a_row.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n >= TRIP_AFTER && !self.open.swap(true, Ordering::AcqRel) {
            self.trips.inc();
            self.open_gauge.set(1);
            tracing::warn!(failures = n, "Redis circuit breaker open: serving without Redis, probing it in the background");
            return true;
        }
        false
    }

    /// True for the one caller that is to run the probe.
    pub fn start_probing(&self) -> bool {
        !self.probing.load(Ordering::Acquire) && !self.probing.swap(true, Ordering::AcqRel)
    }

    pub fn probe_ended(&self, answered: bool) {
        if answered {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
            self.open.store(false, Ordering::Release);
            self.open_gauge.set(0);
            tracing::info!("Redis answers again: circuit breaker closed");
        }
        self.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_only() {
        let m = super::super::CacheMetrics::unregistered();
        let b = Breaker::new(m.circuit_trips.clone(), m.circuit_open.clone());
        assert!(!b.failed());
        assert!(!b.failed());
        b.succeeded();
        assert!(!b.failed());
        assert!(!b.failed());
        assert!(!b.is_open());
        assert!(b.failed(), "the third failure in a row opens it");
        assert!(b.is_open());
        assert!(!b.failed(), "only one caller is told it opened");
        assert!(b.start_probing());
        assert!(!b.start_probing(), "one probe at a time");
        b.probe_ended(false);
        assert!(b.is_open());
        assert!(b.start_probing());
        b.probe_ended(true);
        assert!(!b.is_open());
        assert!(!b.failed());
    }
}
