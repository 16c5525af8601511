//! Cron schedules for scheduled functions: 5 fields in UTC (`minute hour day-of-month month
//! day-of-week`) or an `@hourly`-style shortcut, as Netlify's `config.schedule` accepts.
//!
//! Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, and month and
//! weekday names (`JAN`, `MON`); weekday 7 is Sunday, like 0. When both day fields are
//! restricted a day matches if either does (the classic cron rule). Time is plain Unix seconds
//! in UTC, so the module needs no time-zone or date library.

use std::fmt;
use std::str::FromStr;

/// Why a schedule cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid schedule {input:?}: {reason}; expected 5 fields (minute hour day-of-month month day-of-week, UTC) or @yearly, @monthly, @weekly, @daily or @hourly"
)]
pub struct CronError {
    input: String,
    reason: String,
}

/// A parsed schedule.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl FromStr for Schedule {
    type Err = CronError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| CronError {
            input: input.chars().take(100).collect(),
            reason,
        };
        let trimmed = input.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(err(format!("unknown shortcut {trimmed:?}"))),
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!("found {} fields", fields.len())));
        }
        let minutes = field(fields[0], 0, 59, &[]).map_err(|e| err(format!("minute: {e}")))?;
        let hours = field(fields[1], 0, 23, &[]).map_err(|e| err(format!("hour: {e}")))?;
        let dom = field(fields[2], 1, 31, &[]).map_err(|e| err(format!("day of month: {e}")))?;
        let months = field(fields[3], 1, 12, &MONTHS).map_err(|e| err(format!("month: {e}")))?;
        let mut dow =
            field(fields[4], 0, 7, &WEEKDAYS).map_err(|e| err(format!("day of week: {e}")))?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        Ok(Self {
            source: trimmed.to_string(),
            minutes,
            hours: hours as u32,
            days_of_month: dom as u32,
            months: months as u16,
            days_of_week: dow as u8,
            dom_restricted: !fields[2].starts_with('*'),
            dow_restricted: !fields[4].starts_with('*'),
        })
    }
}

/// Parses one field into a bit set of the allowed values.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        let v: u32 = s.parse().map_err(|_| {
            format!(
                "{s:?} is not a number{}",
                if names.is_empty() { "" } else { " or name" }
            )
        })?;
        if v < min || v > max {
            return Err(format!("{v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("range {a}-{b} is backwards"));
            }
            (a, b)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if step > 1 { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    /// The first run strictly after `after` (Unix seconds, UTC), at the start of a minute.
    /// `None` if the schedule never fires (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = after.div_euclid(60) + 1;
        let first_day = start.div_euclid(1440);
        let mut minute_of_day = start.rem_euclid(1440);
        // Every valid schedule fires within 8 years (29 February needs up to 8 with the
        // century rule); beyond that it never does.
        for day in first_day..first_day + 366 * 8 {
            let (_, month, dom) = civil_from_days(day);
            let dow = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday.
            if self.months & (1 << month) != 0 && self.day_matches(dom, dow) {
                for m in minute_of_day..1440 {
                    let (h, mi) = (m / 60, m % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << mi) != 0 {
                        return Some((day * 1440 + m) * 60);
                    }
                }
            }
            minute_of_day = 0;
        }
        None
    }

    fn day_matches(&self, dom: u32, dow: u32) -> bool {
        let dom_ok = self.days_of_month & (1 << dom) != 0;
        let dow_ok = self.days_of_week & (1 << dow) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom_ok || dow_ok,
            _ => dom_ok && dow_ok,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.source)
    }
}

/// Year, month (1-12) and day (1-31) of a day number counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Formats Unix seconds as the ISO 8601 form JavaScript's `toISOString` gives
/// (`2024-05-01T12:00:00.000Z`).
pub fn iso8601(unix: i64) -> String {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, for readable tests.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        // Inverse of civil_from_days (days_from_civil).
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = i64::from((mo + 9) % 12);
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn next_run_table() {
        let now = at(2024, 5, 15, 10, 30) + 17; // Wednesday 2024-05-15 10:30:17
        let cases = [
            ("* * * * *", at(2024, 5, 15, 10, 31)),
            ("@hourly", at(2024, 5, 15, 11, 0)),
            ("@daily", at(2024, 5, 16, 0, 0)),
            ("@midnight", at(2024, 5, 16, 0, 0)),
            ("@weekly", at(2024, 5, 19, 0, 0)),
            ("@monthly", at(2024, 6, 1, 0, 0)),
            ("@yearly", at(2025, 1, 1, 0, 0)),
            ("@annually", at(2025, 1, 1, 0, 0)),
            ("*/15 * * * *", at(2024, 5, 15, 10, 45)),
            ("5/20 * * * *", at(2024, 5, 15, 10, 45)),
            ("0 9-17/4 * * *", at(2024, 5, 15, 13, 0)),
            ("30 10 * * *", at(2024, 5, 16, 10, 30)),
            ("0 0 * * MON", at(2024, 5, 20, 0, 0)),
            ("0 0 * * 7", at(2024, 5, 19, 0, 0)),
            ("0 0 * * sun", at(2024, 5, 19, 0, 0)),
            ("0 0 1 * 3", at(2024, 5, 22, 0, 0)),
            ("0 0 1,20 * *", at(2024, 5, 20, 0, 0)),
            ("0 0 29 2 *", at(2028, 2, 29, 0, 0)),
            ("0 12 * JAN-MAR *", at(2025, 1, 1, 12, 0)),
            ("  0 0 31 * *  ", at(2024, 5, 31, 0, 0)),
        ];
        for (expr, want) in cases {
            let s: Schedule = expr.parse().unwrap();
            assert_eq!(
                s.next_after(now).map(iso8601),
                Some(iso8601(want)),
                "{expr}"
            );
        }
        let never: Schedule = "0 0 31 2 *".parse().unwrap();
        assert_eq!(never.next_after(now), None);
    }

    #[test]
    fn next_run_is_strictly_after_a_minute_boundary() {
        let s: Schedule = "* * * * *".parse().unwrap();
        let t = at(2024, 12, 31, 23, 59);
        assert_eq!(s.next_after(t), Some(at(2025, 1, 1, 0, 0)));
    }

    #[test]
    fn invalid_schedules_say_what_is_wrong() {
        let cases = [
            ("", "found 0 fields"),
            ("* * * *", "found 4 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 24 * * *", "hour: 24 is outside 0-23"),
            ("* * 0 * *", "day of month: 0 is outside 1-31"),
            ("* * * 13 *", "month: 13 is outside 1-12"),
            ("* * * FOO *", "month: \"FOO\" is not a number or name"),
            ("*/0 * * * *", "a step of 0"),
            ("5-1 * * * *", "backwards"),
            ("@every5m", "unknown shortcut"),
        ];
        for (expr, want) in cases {
            let e = expr.parse::<Schedule>().unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
            assert!(e.contains("expected 5 fields"), "{e}");
        }
    }

    #[test]
    fn iso_formatting() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(at(2000, 2, 29, 23, 59) + 59),
            "2000-02-29T23:59:59.000Z"
        );
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.000Z");
    }
}
