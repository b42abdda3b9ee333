//! Wall-clock times as text: the log line's stamp (Ganeti's shape) and
//! RFC 3339 for what machines read (control answers, the journal).
//!
//! Pure arithmetic on `SystemTime`, in UTC, so it needs no time zone data
//! and no library.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A wall-clock time split into its UTC calendar fields.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    /// Below the second.
    fraction: std::time::Duration,
}

impl Civil {
    fn of(time: SystemTime) -> Civil {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            fraction: std::time::Duration::from_nanos(u64::from(since.subsec_nanos())),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS,uuuuuu` in UTC.
pub struct Timestamp(pub SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Civil::of(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:06}",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.fraction.as_micros()
        )
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC), for machine-read output.
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Civil::of(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.fraction.as_millis()
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_in_ganetis_shape() {
        // `date -u -d @1795953178` says 2026-11-29 11:52:58.
        let t = UNIX_EPOCH + Duration::from_micros(1_795_953_178_054_020);
        assert_eq!(Timestamp(t).to_string(), "2026-11-29 11:52:58,054020");
        assert_eq!(
            Timestamp(UNIX_EPOCH).to_string(),
            "1970-01-01 00:00:00,000000"
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(Timestamp(leap).to_string(), "2000-02-29 00:00:00,000000");
        assert_eq!(Rfc3339(t).to_string(), "2026-11-29T11:52:58.054Z");
    }
}
