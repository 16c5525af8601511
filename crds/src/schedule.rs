//! Schedules of scheduled functions: the one grammar that `kpages build` accepts, `kpages dev`'s
//! scheduler runs and the cluster's CronJobs are given.
//!
//! A schedule is 5 fields in UTC (`minute hour day-of-month month day-of-week`) or one of the
//! shortcuts Netlify documents (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`). Fields take `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and
//! `a/n`, lists `a,b`, and month and weekday names (`JAN`, `MON`); weekday 7 is Sunday, like 0.
//! When both day fields are restricted a day matches if either does (the Vixie cron rule).
//!
//! Evaluation is [`croner`]'s. The extensions croner also knows (`L`, `W`, `#`, `?`, seconds,
//! years) are refused here, because a Kubernetes CronJob could not run them: what the build
//! accepts must run everywhere.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// What a schedule error says is accepted.
const ACCEPTED: &str = "expected 5 fields (minute hour day-of-month month day-of-week, UTC) or @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly";

const SHORTCUTS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's name, bounds and the names it accepts.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
    },
];

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {input:?}: {reason}; {ACCEPTED}")]
pub struct ScheduleError {
    input: String,
    reason: String,
}

/// A checked schedule.
#[derive(Clone)]
pub struct Schedule {
    source: String,
    cron: Cron,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ScheduleError {
            input: input.chars().take(100).collect(),
            reason,
        };
        let trimmed = input.trim();
        let expanded = if trimmed.starts_with('@') {
            SHORTCUTS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
                .map(|(_, fields)| *fields)
                .ok_or_else(|| err(format!("unknown shortcut {trimmed:?}")))?
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!("found {} fields", fields.len())));
        }
        for (text, spec) in fields.iter().zip(&FIELDS) {
            check_field(text, spec).map_err(|e| err(format!("{}: {e}", spec.name)))?;
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(&fields.join(" "))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            source: trimmed.to_string(),
            cron,
        })
    }
}

/// Checks one field against the grammar above, so that an error names the field and the
/// value, and croner's extensions never get through.
fn check_field(text: &str, spec: &FieldSpec) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if spec.names.iter().any(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(spec.min);
        }
        let v: u32 = s.parse().map_err(|_| {
            format!(
                "{s:?} is not a number{}",
                if spec.names.is_empty() {
                    ""
                } else {
                    " or name"
                }
            )
        })?;
        if v < spec.min || v > spec.max {
            return Err(format!("{v} is outside {}-{}", spec.min, spec.max));
        }
        Ok(v)
    };
    for part in text.split(',') {
        let range = match part.split_once('/') {
            Some((range, step)) => {
                match step.parse::<u32>() {
                    Ok(0) => return Err("a step of 0".into()),
                    Ok(_) => {}
                    Err(_) => return Err(format!("step {step:?} is not a number")),
                }
                range
            }
            None => part,
        };
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a_is_name, b_is_name) = (
                    spec.names.iter().any(|n| n.eq_ignore_ascii_case(a)),
                    spec.names.iter().any(|n| n.eq_ignore_ascii_case(b)),
                );
                let (lo, hi) = (value(a)?, value(b)?);
                if !a_is_name && !b_is_name && lo > hi {
                    return Err(format!("range {lo}-{hi} is backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

impl Schedule {
    /// The first run strictly after `after` (Unix seconds, UTC), at the start of a minute;
    /// `None` if the schedule never fires (such as `0 0 31 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = jiff::Timestamp::from_second(after).ok()?;
        let zoned = start.to_zoned(jiff::tz::TimeZone::UTC);
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|next| next.timestamp().as_second())
    }

    /// The schedule as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Schedule {}

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

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Formats Unix seconds as JavaScript's `toISOString` does (`2024-05-01T12:00:00.000Z`), the
/// form of a scheduled run's `next_run`.
pub fn iso8601(unix: i64) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string(),
        Err(_) => String::from("invalid time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, for readable tests.
    fn at(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .unwrap_or(i64::MIN)
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
            ("@HOURLY", at(2024, 5, 15, 11, 0)),
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
            ("0 * * * * *", "found 6 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 24 * * *", "hour: 24 is outside 0-23"),
            ("* * 0 * *", "day of month: 0 is outside 1-31"),
            ("* * * 13 *", "month: 13 is outside 1-12"),
            ("* * * FOO *", "month: \"FOO\" is not a number or name"),
            ("*/0 * * * *", "a step of 0"),
            ("5-1 * * * *", "backwards"),
            ("@every5m", "unknown shortcut"),
            // croner's extensions, which a Kubernetes CronJob cannot run.
            ("0 0 L * *", "day of month: \"L\" is not a number"),
            (
                "0 0 * * 5#2",
                "day of week: \"5#2\" is not a number or name",
            ),
            ("0 0 15W * *", "day of month: \"15W\" is not a number"),
            ("0 0 ? * *", "day of month: \"?\" is not a number"),
            ("0 0 * MON *", "month: \"MON\" is not a number or name"),
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
