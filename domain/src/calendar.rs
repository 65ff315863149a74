//! The working-day calendar the regulation's clocks run on: data, not code.
//! One TOML file per year lists the days off and the adjusted working weekends (调休);
//! operators replace the files without a rebuild. A clock that needs a year the calendar
//! lacks is an error naming that year, never a guess.
//!
//! Time of day is China Standard Time (UTC+8, no daylight saving). Adding `n` working days
//! to a moment gives the same time of day on the `n`-th following working day; a clock
//! started on a day off starts at 00:00 of the next working day.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Weekday};
use serde::Deserialize;

/// China Standard Time.
pub fn china() -> FixedOffset {
    // 8 hours is within FixedOffset's ±24 h range.
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("cannot read calendar {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("calendar file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("calendar file {path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("the working-day calendar has no file for {0}: add {0}.toml to the calendar directory")]
    MissingYear(i32),
    #[error("time {0} ms is out of range")]
    OutOfRange(i64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    #[serde(default)]
    provisional: bool,
    #[serde(default)]
    holidays: Vec<HolidayRange>,
    #[serde(default)]
    adjusted_working_days: Vec<NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayRange {
    from: NaiveDate,
    to: NaiveDate,
    #[serde(default)]
    #[allow(dead_code)] // kept for operators reading the file; the clock needs only dates
    name: String,
}

#[derive(Debug, Default)]
struct Year {
    days_off: BTreeSet<NaiveDate>,
    adjusted_working: BTreeSet<NaiveDate>,
    provisional: bool,
}

/// The loaded calendar: every year it has a file for.
#[derive(Debug, Default)]
pub struct Calendar {
    years: BTreeMap<i32, Year>,
}

impl Calendar {
    /// Loads every `YYYY.toml` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Calendar, CalendarError> {
        let read_err = |source| CalendarError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut calendar = Calendar::default();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        entries.sort();
        for path in entries {
            calendar.add_file(&path)?;
        }
        Ok(calendar)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), CalendarError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_text(path, &text)
    }

    /// Adds the year of a calendar file's text; `path` names it (its stem must be the year).
    pub fn add_text(&mut self, path: &Path, text: &str) -> Result<(), CalendarError> {
        let invalid = |why: String| CalendarError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        let file: YearFile = toml::from_str(text).map_err(|source| CalendarError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != file.year.to_string() {
            return Err(invalid(format!(
                "the file name says {stem} but `year` is {}",
                file.year
            )));
        }
        if self.years.contains_key(&file.year) {
            return Err(invalid(format!("{} is defined twice", file.year)));
        }
        let mut year = Year {
            provisional: file.provisional,
            ..Year::default()
        };
        for h in &file.holidays {
            if h.to < h.from {
                return Err(invalid(format!("holiday {} ends before it starts", h.from)));
            }
            let mut d = h.from;
            while d <= h.to {
                if d.year() != file.year {
                    return Err(invalid(format!("{d} is not in {}", file.year)));
                }
                year.days_off.insert(d);
                d += Duration::days(1);
            }
        }
        for d in &file.adjusted_working_days {
            if d.year() != file.year {
                return Err(invalid(format!("{d} is not in {}", file.year)));
            }
            if !is_weekend(*d) {
                return Err(invalid(format!(
                    "adjusted working day {d} is a {}, not a weekend day",
                    d.weekday()
                )));
            }
            if year.days_off.contains(d) {
                return Err(invalid(format!("{d} is both a day off and a working day")));
            }
            year.adjusted_working.insert(*d);
        }
        if year.provisional {
            tracing::warn!(year = file.year, path = %path.display(),
                "the calendar for this year is provisional: replace it with the published arrangement");
        }
        self.years.insert(file.year, year);
        Ok(())
    }

    /// The years the calendar covers.
    pub fn years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    pub fn is_provisional(&self, year: i32) -> bool {
        self.years.get(&year).is_some_and(|y| y.provisional)
    }

    pub fn is_working_day(&self, d: NaiveDate) -> Result<bool, CalendarError> {
        let year = self
            .years
            .get(&d.year())
            .ok_or(CalendarError::MissingYear(d.year()))?;
        Ok(if year.adjusted_working.contains(&d) {
            true
        } else if year.days_off.contains(&d) {
            false
        } else {
            !is_weekend(d)
        })
    }

    fn next_working_day(&self, mut d: NaiveDate) -> Result<NaiveDate, CalendarError> {
        loop {
            d += Duration::days(1);
            if self.is_working_day(d)? {
                return Ok(d);
            }
        }
    }

    /// The moment `n` working days after `start_ms` (Unix ms), in Unix ms.
    pub fn add_working_days(&self, start_ms: i64, n: u32) -> Result<i64, CalendarError> {
        let tz = china();
        let start = tz
            .timestamp_millis_opt(start_ms)
            .single()
            .ok_or(CalendarError::OutOfRange(start_ms))?;
        let (mut day, time) = if self.is_working_day(start.date_naive())? {
            (start.date_naive(), start.time())
        } else {
            (self.next_working_day(start.date_naive())?, NaiveTime::MIN)
        };
        for _ in 0..n {
            day = self.next_working_day(day)?;
        }
        tz.from_local_datetime(&day.and_time(time))
            .single()
            .map(|t| t.timestamp_millis())
            .ok_or(CalendarError::OutOfRange(start_ms))
    }
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Calendar {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../calendar");
        Calendar::load_dir(&dir).expect("the shipped calendar loads")
    }

    /// Unix ms of a China Standard Time moment.
    fn at(date: &str, time: &str) -> i64 {
        let d: NaiveDate = date.parse().expect("date");
        let t: NaiveTime = time.parse().expect("time");
        china()
            .from_local_datetime(&d.and_time(t))
            .single()
            .expect("unambiguous")
            .timestamp_millis()
    }

    #[test]
    fn the_shipped_calendar_covers_this_year_and_the_next() {
        let c = shipped();
        assert!(c.years().contains(&2026) && c.years().contains(&2027));
        assert!(!c.is_provisional(2026));
        assert!(
            c.is_provisional(2027),
            "2027 was not yet published when shipped"
        );
    }

    #[test]
    fn one_working_day_over_a_weekend() {
        let c = shipped();
        // Friday 20 November 2026, 15:00 → Monday 23 November, 15:00.
        assert_eq!(
            c.add_working_days(at("2026-11-20", "15:00:00"), 1)
                .expect("clock"),
            at("2026-11-23", "15:00:00")
        );
        // Received on Saturday: the clock starts Monday 00:00 and runs one working day.
        assert_eq!(
            c.add_working_days(at("2026-11-21", "10:00:00"), 1)
                .expect("clock"),
            at("2026-11-24", "00:00:00")
        );
    }

    #[test]
    fn one_working_day_over_the_national_day_holiday_and_an_adjusted_saturday() {
        let c = shipped();
        // Wednesday 30 September → the holiday runs 1–7 October → Thursday 8 October.
        assert_eq!(
            c.add_working_days(at("2026-09-30", "10:00:00"), 1)
                .expect("clock"),
            at("2026-10-08", "10:00:00")
        );
        // Friday 9 October → Saturday 10 October is a working day (调休).
        assert_eq!(
            c.add_working_days(at("2026-10-09", "10:00:00"), 1)
                .expect("clock"),
            at("2026-10-10", "10:00:00")
        );
        assert!(
            c.is_working_day("2026-10-10".parse().expect("d"))
                .expect("known")
        );
        assert!(
            !c.is_working_day("2026-10-05".parse().expect("d"))
                .expect("known")
        );
    }

    #[test]
    fn five_working_days_across_the_spring_festival() {
        let c = shipped();
        // Thursday 12 Feb 2026: 13 (Fri), 14 (Sat, adjusted working), then 15–23 off,
        // 24, 25, 26 → the fifth working day is Thursday 26 February.
        assert_eq!(
            c.add_working_days(at("2026-02-12", "09:30:00"), 5)
                .expect("clock"),
            at("2026-02-26", "09:30:00")
        );
    }

    #[test]
    fn a_missing_year_is_an_error_naming_it() {
        let c = shipped();
        let err = c
            .add_working_days(at("2027-12-30", "10:00:00"), 5)
            .expect_err("2028 is not shipped");
        assert!(err.to_string().contains("2028"), "{err}");
    }

    #[test]
    fn bad_calendar_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("2026", "year = 2025\n", "file name says 2026"),
            (
                "2026",
                "year = 2026\nadjusted_working_days = [\"2026-11-18\"]\n",
                "not a weekend day",
            ),
            (
                "2026",
                "year = 2026\nholidays = [{ from = \"2026-10-03\", to = \"2026-10-01\" }]\n",
                "ends before it starts",
            ),
        ];
        for (stem, body, expected) in cases {
            let sub = tempfile::tempdir_in(dir.path()).expect("subdir");
            std::fs::write(sub.path().join(format!("{stem}.toml")), body).expect("write");
            let err = Calendar::load_dir(sub.path()).expect_err(body).to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }
}
