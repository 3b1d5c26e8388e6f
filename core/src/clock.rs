//! Time as the core sees it: an injectable clock and the user's time zone, so that "today"
//! and every insight can be computed for a fixed instant in tests.

use std::sync::Mutex;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::validate::Day;

/// Where the core gets the current instant and the user's time zone.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// The user's time zone: days are stored as calendar days in this zone.
    fn time_zone(&self) -> TimeZone;
    /// Today in the user's time zone.
    fn today(&self) -> Day {
        self.now().to_zoned_datetime(self.time_zone()).date()
    }
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }
}

/// The system clock in the system's time zone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn time_zone(&self) -> TimeZone {
        TimeZone::system()
    }
}

/// A clock that stays where it is set; for tests and deterministic demos.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<Timestamp>,
    zone: TimeZone,
}

impl FixedClock {
    /// A clock at `now` in `zone`.
    pub fn new(now: Timestamp, zone: TimeZone) -> Self {
        FixedClock {
            now: Mutex::new(now),
            zone,
        }
    }

    /// Moves the clock.
    pub fn set(&self, now: Timestamp) {
        if let Ok(mut guard) = self.now.lock() {
            *guard = now;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.now.lock().map(|g| *g).unwrap_or(Timestamp::UNIX_EPOCH)
    }
    fn time_zone(&self) -> TimeZone {
        self.zone.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_computed_in_the_users_zone() {
        // 03:30 UTC on 1 March is still 28 February in Los Angeles.
        let instant: Timestamp = "2026-03-01T03:30:00Z".parse().unwrap();
        let la = FixedClock::new(instant, TimeZone::get("America/Los_Angeles").unwrap());
        assert_eq!(la.today().to_string(), "2026-02-28");
        let utc = FixedClock::new(instant, TimeZone::UTC);
        assert_eq!(utc.today().to_string(), "2026-03-01");
    }
}
