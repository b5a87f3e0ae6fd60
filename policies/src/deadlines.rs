//! When a data-subject request must be answered, under the regime that applies to the
//! subject, never later than the policy's `rights.response_days` (a tenant may shorten it,
//! never lengthen it).
//!
//! - **GDPR** Art. 12(3): without undue delay and at most one month from receipt; extendable
//!   once by two further months where necessary, if the subject is told, with the reasons,
//!   within the first month. "One month" is counted as the same day of the next month, or
//!   the month's last day when it has no such day (31 January → 28/29 February).
//! - **DPDP** (India, Act 2023 with the 2025 Rules): access (s.11), correction and erasure
//!   (s.12) and grievances (s.13) are answered within the outer limit the Rules set
//!   ([`DPDP_OUTER_LIMIT_DAYS`], reported as 90 days); no extension. The Act has no
//!   portability or objection right; our policy grants them to everyone, on the policy's
//!   deadline.
//!
//! Pure functions: the caller passes the clock.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime};

use crate::model::Right;

/// The outer limit for answering under India's DPDP Rules 2025, in days.
pub const DPDP_OUTER_LIMIT_DAYS: i64 = 90;
/// A request due within this many days is "soon due".
pub const SOON_DUE_DAYS: i64 = 7;

/// The legal regime a request is answered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// EU/EEA GDPR.
    Gdpr,
    /// India's Digital Personal Data Protection Act 2023.
    Dpdp,
}

impl Regime {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Gdpr => "gdpr",
            Regime::Dpdp => "dpdp",
        }
    }

    /// Parses `gdpr` or `dpdp`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gdpr" => Some(Regime::Gdpr),
            "dpdp" => Some(Regime::Dpdp),
            _ => None,
        }
    }

    /// Whether the regime itself grants `right` (our policy may grant more).
    pub fn grants(self, right: Right) -> bool {
        match self {
            Regime::Gdpr => true,
            Regime::Dpdp => matches!(right, Right::Access | Right::Correction | Right::Deletion),
        }
    }
}

/// `t` plus `months` calendar months, clamped to the target month's last day.
pub fn add_months(t: OffsetDateTime, months: u8) -> OffsetDateTime {
    let d = t.date();
    let total = d.month() as i32 - 1 + i32::from(months);
    let year = d.year() + total.div_euclid(12);
    let month = Month::try_from(u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1))
        .unwrap_or(Month::January);
    let last = month.length(year);
    let day = d.day().min(last);
    match Date::from_calendar_date(year, month, day) {
        Ok(date) => t.replace_date(date),
        // Unreachable for real dates; keep the request due no later than 28 days on.
        Err(_) => t + Duration::days(28),
    }
}

/// When a request received at `received` is due: the regime's limit, capped by the
/// policy's `response_days`.
pub fn due_date(
    received: OffsetDateTime,
    regime: Regime,
    right: Right,
    response_days: u32,
) -> OffsetDateTime {
    let policy = received + Duration::days(i64::from(response_days));
    let legal = match regime {
        Regime::Gdpr => add_months(received, 1),
        Regime::Dpdp if regime.grants(right) => received + Duration::days(DPDP_OUTER_LIMIT_DAYS),
        // Granted by our policy only: the policy's deadline.
        Regime::Dpdp => policy,
    };
    legal.min(policy)
}

/// Why an extension was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The regime has no extension (DPDP).
    #[error("the {0} regime allows no extension")]
    NotAllowed(&'static str),
    /// Already extended once.
    #[error("the request was already extended once (GDPR Art. 12(3) allows one extension)")]
    AlreadyExtended,
    /// The notice must reach the subject within the first month.
    #[error("an extension must be notified within one month of receipt (GDPR Art. 12(3))")]
    TooLate,
    /// The subject must be told why.
    #[error("an extension needs the reasons the subject will be told")]
    NoReason,
}

/// The new due date of a GDPR request extended at `now`: at most two further months
/// (three months from receipt), only once, only within the first month, only with reasons.
pub fn extend(
    received: OffsetDateTime,
    regime: Regime,
    already_extended: bool,
    reason: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, ExtensionError> {
    if regime != Regime::Gdpr {
        return Err(ExtensionError::NotAllowed(regime.as_str()));
    }
    if already_extended {
        return Err(ExtensionError::AlreadyExtended);
    }
    if reason.trim().is_empty() {
        return Err(ExtensionError::NoReason);
    }
    if now > add_months(received, 1) {
        return Err(ExtensionError::TooLate);
    }
    Ok(add_months(received, 3))
}

/// Where a request stands against its due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// More than [`SOON_DUE_DAYS`] left.
    OnTrack,
    /// Due within [`SOON_DUE_DAYS`].
    SoonDue,
    /// Past due.
    Overdue,
}

/// The urgency of an open request due at `due`.
pub fn urgency(due: OffsetDateTime, now: OffsetDateTime) -> Urgency {
    if now > due {
        Urgency::Overdue
    } else if due - now <= Duration::days(SOON_DUE_DAYS) {
        Urgency::SoonDue
    } else {
        Urgency::OnTrack
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn one_month_is_a_calendar_month_clamped() {
        assert_eq!(
            add_months(datetime!(2026-01-31 10:00 UTC), 1),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2028-01-31 10:00 UTC), 1),
            datetime!(2028-02-29 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-11-27 09:30 UTC), 3),
            datetime!(2027-02-27 09:30 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-12-15 00:00 UTC), 1),
            datetime!(2027-01-15 00:00 UTC)
        );
    }

    #[test]
    fn gdpr_is_one_month_capped_by_the_policy() {
        let r = datetime!(2026-01-31 10:00 UTC);
        // February is short: one month (28 days) comes before the policy's 30 days.
        assert_eq!(
            due_date(r, Regime::Gdpr, Right::Access, 30),
            datetime!(2026-02-28 10:00 UTC)
        );
        // In a long month the policy's 30 days come first.
        let r = datetime!(2026-03-01 10:00 UTC);
        assert_eq!(
            due_date(r, Regime::Gdpr, Right::Deletion, 30),
            datetime!(2026-03-31 10:00 UTC)
        );
        // A tenant that shortened to 10 days.
        assert_eq!(
            due_date(r, Regime::Gdpr, Right::Deletion, 10),
            datetime!(2026-03-11 10:00 UTC)
        );
    }

    #[test]
    fn dpdp_uses_its_outer_limit_or_the_policy() {
        let r = datetime!(2026-03-01 10:00 UTC);
        // The policy (30 days) is stricter than the DPDP outer limit.
        assert_eq!(
            due_date(r, Regime::Dpdp, Right::Correction, 30),
            r + Duration::days(30)
        );
        // A platform policy of 120 days would still be capped at 90 under DPDP.
        assert_eq!(
            due_date(r, Regime::Dpdp, Right::Deletion, 120),
            r + Duration::days(90)
        );
        // Portability is our policy's promise, not DPDP's: the policy's deadline.
        assert_eq!(
            due_date(r, Regime::Dpdp, Right::Portability, 120),
            r + Duration::days(120)
        );
        assert!(!Regime::Dpdp.grants(Right::Objection));
        assert!(Regime::Gdpr.grants(Right::Objection));
    }

    #[test]
    fn extensions_follow_article_12_3() {
        let r = datetime!(2026-03-01 10:00 UTC);
        let in_time = r + Duration::days(20);
        assert_eq!(
            extend(r, Regime::Gdpr, false, "many requests at once", in_time),
            Ok(datetime!(2026-06-01 10:00 UTC))
        );
        assert_eq!(
            extend(r, Regime::Gdpr, true, "again", in_time),
            Err(ExtensionError::AlreadyExtended)
        );
        assert_eq!(
            extend(r, Regime::Gdpr, false, "late", r + Duration::days(40)),
            Err(ExtensionError::TooLate)
        );
        assert_eq!(
            extend(r, Regime::Gdpr, false, "  ", in_time),
            Err(ExtensionError::NoReason)
        );
        assert_eq!(
            extend(r, Regime::Dpdp, false, "x", in_time),
            Err(ExtensionError::NotAllowed("dpdp"))
        );
    }

    #[test]
    fn urgency_marks_soon_due_and_overdue() {
        let due = datetime!(2026-03-31 10:00 UTC);
        assert_eq!(urgency(due, due - Duration::days(8)), Urgency::OnTrack);
        assert_eq!(urgency(due, due - Duration::days(7)), Urgency::SoonDue);
        assert_eq!(urgency(due, due), Urgency::SoonDue);
        assert_eq!(urgency(due, due + Duration::seconds(1)), Urgency::Overdue);
    }
}
