//! What a node's availability history adds up to (R-10.1, O-5): the time it was up, in
//! maintenance, or not up, within a day or a month of China Standard Time. The history is
//! a list of spans, each lasting until the next one starts (the last until now).
//!
//! Must not: read or write the store (the core keeps the spans; `isms_core` reads them).

use chrono::{Datelike, NaiveDate, TimeZone};
use isms_domain::calendar::china;
use isms_proto::v1::{AvailabilitySpan, Liveness};

/// Time in each kind of state within a period, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub up_ms: i64,
    pub maintenance_ms: i64,
    /// Stale, down or unknown.
    pub not_up_ms: i64,
}

impl Tally {
    /// Share of the time known outside maintenance that the node was up, per mille;
    /// -1 when nothing of the period is known.
    pub fn permille(&self) -> i32 {
        let known = self.up_ms + self.not_up_ms;
        if known <= 0 {
            return -1;
        }
        i32::try_from(self.up_ms * 1000 / known).unwrap_or(1000)
    }
}

/// The tally of `spans` (ordered by start) over `[from_ms, to_ms)`, the last span lasting
/// until `now_ms`.
pub fn tally(spans: &[AvailabilitySpan], from_ms: i64, to_ms: i64, now_ms: i64) -> Tally {
    let mut t = Tally::default();
    for (i, span) in spans.iter().enumerate() {
        let end = spans.get(i + 1).map_or(now_ms, |next| next.start_ms);
        let (start, end) = (span.start_ms.max(from_ms), end.min(to_ms));
        if end <= start {
            continue;
        }
        let ms = end - start;
        match Liveness::try_from(span.liveness).unwrap_or(Liveness::Unspecified) {
            Liveness::Up => t.up_ms += ms,
            Liveness::Maintenance => t.maintenance_ms += ms,
            Liveness::Unspecified => {}
            Liveness::Stale | Liveness::Down | Liveness::Unknown => t.not_up_ms += ms,
        }
    }
    t
}

/// The day (China Standard Time) `at_ms` falls in, as `[start, end)` Unix ms.
pub fn day_of(at_ms: i64) -> (i64, i64) {
    let date = date_of(at_ms);
    (start_of(date), start_of(date.succ_opt().unwrap_or(date)))
}

/// The month (China Standard Time) `at_ms` falls in, as `[start, end)` Unix ms.
pub fn month_of(at_ms: i64) -> (i64, i64) {
    let date = date_of(at_ms);
    let first = date.with_day(1).unwrap_or(date);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    (start_of(first), start_of(next.unwrap_or(first)))
}

fn date_of(at_ms: i64) -> NaiveDate {
    china()
        .timestamp_millis_opt(at_ms)
        .single()
        .map_or(NaiveDate::MIN, |t| t.date_naive())
}

fn start_of(d: NaiveDate) -> i64 {
    china()
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map_or(0, |t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(l: Liveness, start_ms: i64) -> AvailabilitySpan {
        AvailabilitySpan {
            liveness: l as i32,
            start_ms,
        }
    }

    #[test]
    fn spans_are_cut_to_the_period_and_maintenance_is_counted_apart() {
        let h = 3_600_000;
        let spans = [
            span(Liveness::Up, 0),
            span(Liveness::Down, 10 * h),
            span(Liveness::Maintenance, 11 * h),
            span(Liveness::Up, 12 * h),
        ];
        let t = tally(&spans, 0, 24 * h, 24 * h);
        assert_eq!(
            t,
            Tally {
                up_ms: 22 * h,
                maintenance_ms: h,
                not_up_ms: h
            }
        );
        assert_eq!(t.permille(), 956); // 22 of the 23 hours outside maintenance
        // The last span lasts until now, not beyond; before the first, nothing is known.
        let t = tally(&spans, 20 * h, 48 * h, 30 * h);
        assert_eq!(t.up_ms, 10 * h);
        assert_eq!(tally(&spans, -5 * h, 0, 30 * h).permille(), -1);
    }

    #[test]
    fn days_and_months_are_china_standard_time() {
        // 2026-12-31T23:30:00+08:00
        let at = 1_798_731_000_000;
        let (start, end) = day_of(at);
        assert_eq!(end - start, 86_400_000);
        assert_eq!(start, 1_798_646_400_000); // 2026-12-31T00:00:00+08:00
        let (start, end) = month_of(at);
        assert_eq!(start, 1_796_054_400_000); // 2026-12-01T00:00:00+08:00
        assert_eq!(end, 1_798_732_800_000); // 2027-01-01T00:00:00+08:00
    }
}
