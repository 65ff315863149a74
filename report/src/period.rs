//! A report's period as operators name it (`2026-11`, `2026`): its bounds in China Standard
//! Time, and whether it has ended, since a report on a period still running would change
//! under its reader.

use chrono::{Datelike, NaiveDate, TimeZone};
use isms_domain::calendar::china;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Month { year: i32, month: u32 },
    Year(i32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error("{0:?} is not a month: expected YYYY-MM, e.g. 2026-11")]
    BadMonth(String),
    #[error("{0:?} is not a year: expected YYYY, e.g. 2026")]
    BadYear(String),
    #[error("{period} has not ended (it ends {ends}): a report covers a period that is over")]
    NotEnded { period: String, ends: String },
}

impl Period {
    pub fn month(text: &str) -> Result<Period, PeriodError> {
        let bad = || PeriodError::BadMonth(text.to_string());
        let (y, m) = text.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
        Ok(Period::Month { year, month })
    }

    pub fn year(text: &str) -> Result<Period, PeriodError> {
        let bad = || PeriodError::BadYear(text.to_string());
        let t = text.trim();
        if t.len() != 4 {
            return Err(bad());
        }
        let year: i32 = t.parse().map_err(|_| bad())?;
        NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(bad)?;
        Ok(Period::Year(year))
    }

    /// `2026-11` or `2026`.
    pub fn label(&self) -> String {
        match self {
            Period::Month { year, month } => format!("{year:04}-{month:02}"),
            Period::Year(year) => format!("{year:04}"),
        }
    }

    /// `[from, until)` as Unix ms, China Standard Time.
    pub fn bounds_ms(&self) -> (i64, i64) {
        let (first, next) = self.dates();
        (start_of(first), start_of(next))
    }

    /// Refuses a period that has not ended by `now_ms`.
    pub fn check_ended(&self, now_ms: i64) -> Result<(), PeriodError> {
        let (_, until) = self.bounds_ms();
        if now_ms < until {
            return Err(PeriodError::NotEnded {
                period: self.label(),
                ends: self.dates().1.format("%Y-%m-%d 00:00 +08:00").to_string(),
            });
        }
        Ok(())
    }

    /// The first day of the period and of the next one.
    fn dates(&self) -> (NaiveDate, NaiveDate) {
        // Both constructors checked that the first day exists; a year past chrono's range
        // (262,000) was refused there too.
        let date = |y, m| NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MIN);
        match *self {
            Period::Month { year, month: 12 } => (date(year, 12), date(year + 1, 1)),
            Period::Month { year, month } => (date(year, month), date(year, month + 1)),
            Period::Year(year) => (date(year, 1), date(year + 1, 1)),
        }
    }
}

fn start_of(date: NaiveDate) -> i64 {
    china()
        .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .single()
        .map_or(0, |t| t.timestamp_millis())
}

/// The day (`2026-11-03`) or month (`2026-11`) `at_ms` falls in, China Standard Time.
pub(crate) fn bucket_label(at_ms: i64, by_month: bool) -> String {
    let t = china()
        .timestamp_millis_opt(at_ms)
        .single()
        .unwrap_or_default();
    if by_month {
        format!("{:04}-{:02}", t.year(), t.month())
    } else {
        t.format("%Y-%m-%d").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_years_parse_and_bad_forms_are_refused() {
        assert_eq!(
            Period::month("2026-11"),
            Ok(Period::Month {
                year: 2026,
                month: 11
            })
        );
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "abcd-ef",
        ] {
            assert!(Period::month(bad).is_err(), "{bad}");
        }
        assert_eq!(Period::year("2026"), Ok(Period::Year(2026)));
        for bad in ["26", "2026-11", "twenty", ""] {
            assert!(Period::year(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_are_in_china_standard_time_and_december_rolls_over() {
        let (from, until) = Period::month("2026-12").expect("month").bounds_ms();
        // 2026-12-01T00:00+08:00 and 2027-01-01T00:00+08:00.
        assert_eq!(from, 1_796_054_400_000);
        assert_eq!(until, 1_798_732_800_000);
        let (yf, yu) = Period::Year(2026).bounds_ms();
        assert_eq!(yu, until);
        assert!(yf < from);
    }

    #[test]
    fn a_period_not_ended_is_refused() {
        let p = Period::month("2026-11").expect("month");
        let (_, until) = p.bounds_ms();
        let e = p.check_ended(until - 1).expect_err("not ended");
        assert!(e.to_string().contains("has not ended"), "{e}");
        assert!(p.check_ended(until).is_ok());
    }
}
