//! What nodes report upward besides directives' results, and its checks: faults (R-10.2,
//! O-2, R-14.2), planned upgrades announced 5 working days ahead and contacts
//! reported within 5 working days of a change.
//!
//! Must not: store or send anything (the core does), or read a calendar from disk.

use chrono::{NaiveDate, TimeZone};
use isms_proto::v1::{Contact, Fault, FaultSeverity, FaultState, FaultUpdate, UpgradeNotice};

use crate::calendar::{Calendar, china};
use crate::directive::{InputError, MAX_NOTE_BYTES};
use crate::identity::NodeId;

/// Longest fault summary, and fault detail, kept.
pub const MAX_SUMMARY_BYTES: usize = 512;
pub const MAX_DETAIL_BYTES: usize = 16 * 1024;
/// Longest field of a contact.
pub const MAX_CONTACT_FIELD_BYTES: usize = 128;
/// Longest upgrade window one notice may announce.
pub const MAX_UPGRADE_MS: i64 = 7 * 86_400_000;
/// Working days of notice an upgrade needs, and the most a contact change may
/// wait to be reported.
pub const NOTICE_WORKING_DAYS: u32 = 5;

fn invalid(why: String) -> InputError {
    InputError::Invalid(why)
}

pub fn severity_name(s: FaultSeverity) -> &'static str {
    match s {
        FaultSeverity::Minor => "minor",
        FaultSeverity::Major => "major",
        FaultSeverity::Critical => "critical",
        FaultSeverity::Unspecified => "unspecified",
    }
}

pub fn fault_state_name(s: FaultState) -> &'static str {
    match s {
        FaultState::Open => "open",
        FaultState::Acknowledged => "acknowledged",
        FaultState::Resolved => "resolved",
        FaultState::Unspecified => "unspecified",
    }
}

pub fn parse_severity(name: &str) -> Result<FaultSeverity, InputError> {
    match name {
        "minor" => Ok(FaultSeverity::Minor),
        "major" => Ok(FaultSeverity::Major),
        "critical" => Ok(FaultSeverity::Critical),
        other => Err(invalid(format!(
            "unknown severity {other:?}: one of minor, major, critical"
        ))),
    }
}

fn text(what: &str, value: &str, max: usize, required: bool) -> Result<(), InputError> {
    if required && value.trim().is_empty() {
        return Err(invalid(format!("the {what} is empty")));
    }
    if value.len() > max {
        return Err(invalid(format!(
            "the {what} is {} bytes long; at most {max} are kept",
            value.len()
        )));
    }
    Ok(())
}

/// A fault as reported, here or by a peer.
pub fn check_fault(f: &Fault) -> Result<(), InputError> {
    if uuid::Uuid::parse_str(&f.id).is_err() {
        return Err(invalid(format!("fault ID {:?} is not a UUID", f.id)));
    }
    f.reporter
        .parse::<NodeId>()
        .map_err(|e| invalid(format!("fault reporter: {e}")))?;
    if FaultSeverity::try_from(f.severity).is_err() || f.severity == 0 {
        return Err(invalid(format!("unknown fault severity {}", f.severity)));
    }
    text("summary", &f.summary, MAX_SUMMARY_BYTES, true)?;
    text("detail", &f.detail, MAX_DETAIL_BYTES, false)
}

/// A decision on a fault, here or from a peer.
pub fn check_fault_update(u: &FaultUpdate) -> Result<(), InputError> {
    if uuid::Uuid::parse_str(&u.fault_id).is_err() {
        return Err(invalid(format!("fault ID {:?} is not a UUID", u.fault_id)));
    }
    u.reporter
        .parse::<NodeId>()
        .map_err(|e| invalid(format!("fault reporter: {e}")))?;
    u.node
        .parse::<NodeId>()
        .map_err(|e| invalid(format!("fault decided by: {e}")))?;
    if u.state != FaultState::Acknowledged as i32 && u.state != FaultState::Resolved as i32 {
        return Err(invalid(format!(
            "a fault is acknowledged or resolved, not {}",
            u.state
        )));
    }
    text("note", &u.note, MAX_NOTE_BYTES, false)
}

/// An upgrade notice, here or from a peer.
pub fn check_upgrade(n: &UpgradeNotice) -> Result<(), InputError> {
    if uuid::Uuid::parse_str(&n.id).is_err() {
        return Err(invalid(format!(
            "upgrade notice ID {:?} is not a UUID",
            n.id
        )));
    }
    n.node
        .parse::<NodeId>()
        .map_err(|e| invalid(format!("upgrade notice of: {e}")))?;
    if n.duration_ms <= 0 || n.duration_ms > MAX_UPGRADE_MS {
        return Err(invalid(format!(
            "an upgrade window lasts more than nothing and at most 7 days, not {} ms",
            n.duration_ms
        )));
    }
    text("summary", &n.summary, MAX_SUMMARY_BYTES, true)
}

/// Whether an upgrade announced at `announced_ms` for `at_ms` comes fewer than 5 working
/// days ahead, and how many whole working days ahead it comes.
pub fn upgrade_lateness(
    calendar: &Calendar,
    announced_ms: i64,
    at_ms: i64,
) -> Result<(bool, i64), InputError> {
    let mut ahead = 0i64;
    // Counted up to a bound: a notice months ahead is simply on time.
    while ahead < 60 {
        let next = calendar
            .add_working_days(announced_ms, u32::try_from(ahead + 1).unwrap_or(u32::MAX))
            .map_err(|e| invalid(format!("the calendar: {e}")))?;
        if next > at_ms {
            break;
        }
        ahead += 1;
    }
    Ok((ahead < i64::from(NOTICE_WORKING_DAYS), ahead))
}

/// A contact, here or from a peer.
pub fn check_contact(c: &Contact) -> Result<(), InputError> {
    c.node
        .parse::<NodeId>()
        .map_err(|e| invalid(format!("contact of: {e}")))?;
    for (what, value) in [
        ("department", &c.department),
        ("name", &c.name),
        ("phone", &c.phone),
        ("email", &c.email),
    ] {
        text(what, value, MAX_CONTACT_FIELD_BYTES, true)?;
    }
    if !c
        .phone
        .chars()
        .all(|ch| ch.is_ascii_digit() || " +-()".contains(ch))
    {
        return Err(invalid(format!(
            "phone {:?}: digits, spaces and + - ( ) only",
            c.phone
        )));
    }
    let at = c.email.find('@');
    if at.is_none_or(|i| i == 0 || i + 1 >= c.email.len()) || c.email.contains(char::is_whitespace)
    {
        return Err(invalid(format!("email {:?} is not an address", c.email)));
    }
    changed_on(&c.changed_on)?;
    Ok(())
}

/// The day a contact changed, `YYYY-MM-DD`.
pub fn changed_on(date: &str) -> Result<NaiveDate, InputError> {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| invalid(format!("changed-on {date:?}: a date, YYYY-MM-DD")))
}

/// Whether a contact change of `changed_on` reported at `reported_ms` comes more than 5
/// working days after it. A change dated after the report is refused.
pub fn contact_lateness(
    calendar: &Calendar,
    changed: NaiveDate,
    reported_ms: i64,
) -> Result<bool, InputError> {
    let day_start = |d: NaiveDate| {
        china()
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .single()
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| invalid(format!("changed-on {changed}: out of range")))
    };
    if day_start(changed)? > reported_ms {
        return Err(invalid(format!(
            "changed-on {changed} is after today: a change is reported once made"
        )));
    }
    // Counted from the end of the day of the change: due by the end of the 5th working
    // day after it.
    let next_day = changed.succ_opt().unwrap_or(changed);
    let due = calendar
        .add_working_days(day_start(next_day)?, NOTICE_WORKING_DAYS)
        .map_err(|e| invalid(format!("the calendar: {e}")))?;
    Ok(reported_ms >= due)
}

#[cfg(test)]
mod tests;
