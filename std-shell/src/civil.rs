//! UTC calendar arithmetic for timestamps in log lines and runlog names.
//!
//! Why hand-written: the shell needs only "unix time → UTC date and time of day", which is a
//! dozen lines (Howard Hinnant's `civil_from_days`), and local time would need `localtime_r`,
//! which reads the `TZ` environment behind a lock that other threads may race with `setenv`.
//! So every timestamp the shell prints or names a file with is UTC.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar date and time of day, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Utc {
    /// The UTC calendar time of `t`. Times before 1970 are supported (the clock may be wrong).
    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
            Err(e) => {
                // Before the epoch: round down to the whole second below.
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut millis = 0;
                if d.subsec_nanos() > 0 {
                    secs -= 1;
                    millis = (1_000_000_000 - d.subsec_nanos()) / 1_000_000;
                }
                (secs, millis)
            }
        };
        Self::from_unix(secs, millis)
    }

    /// The UTC calendar time of `secs` seconds (plus `millis`) after the epoch.
    pub fn from_unix(secs: i64, millis: u32) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            millis,
        }
    }

    /// `YYYY-mm-ddTHH:MM:SS.mmmZ` (RFC 3339, UTC), the time of log lines.
    pub fn rfc3339(self) -> impl fmt::Display {
        Rfc3339(self)
    }

    /// `YYYY-mm-dd HH:MM:SS`, the format of the runlog `ts_str`.
    pub fn display(self) -> impl fmt::Display {
        DateTime(self)
    }

    /// `YYYYmmddHHMMSS`: fixed width for years 0..=9999, so names sort chronologically.
    pub fn compact(self) -> String {
        let mut s = String::with_capacity(14);
        let _ = write!(
            s,
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        s
    }
}

struct DateTime(Utc);

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    }
}

struct Rfc3339(Utc);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
        )
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian calendar.
/// <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn formats() {
        // 2026-11-23 22:16:05.250 UTC
        let t = UNIX_EPOCH + Duration::from_millis(1_795_472_165_250);
        let u = Utc::from_system_time(t);
        assert_eq!(u.display().to_string(), "2026-11-23 22:16:05");
        assert_eq!(u.rfc3339().to_string(), "2026-11-23T22:16:05.250Z");
        assert_eq!(u.compact(), "20261123221605");
        assert_eq!(u.millis, 250);
    }

    #[test]
    fn before_epoch() {
        let u = Utc::from_system_time(UNIX_EPOCH - Duration::from_millis(1500));
        assert_eq!(u.display().to_string(), "1969-12-31 23:59:58");
        assert_eq!(u.millis, 500);
    }

    #[test]
    fn every_day_of_four_centuries_is_consecutive() {
        let mut prev = civil_from_days(-1);
        for z in 0..146_097 {
            let cur = civil_from_days(z);
            if cur.2 != 1 {
                assert_eq!((cur.0, cur.1, cur.2 - 1), prev, "day {z}");
            } else if cur.1 != 1 {
                assert_eq!(cur.0, prev.0);
                assert_eq!(cur.1, prev.1 + 1);
            } else {
                assert_eq!((cur.0 - 1, 12, 31), prev);
            }
            prev = cur;
        }
    }
}
