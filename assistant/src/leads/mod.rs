//! Lead extraction: who the prospective customer is and what they asked for (name,
//! service, preferred date and time, budget) plus a suggested pipeline stage, from a
//! redacted conversation.
//!
//! [`RuleExtractor`] is deterministic and offline (the default and the fallback);
//! [`ProviderExtractor`] asks a [`crate::ChatProvider`] for a structured-output JSON
//! object, validates it against the profile and falls back to the rules on any failure.
//! Values never appear in `Debug` output; [`LeadExtraction::fields_found`] names the
//! fields found (never their values) for the caller's ledger.

use std::fmt;

use jiff::civil::{Date, Time};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::RequestError;
use crate::profile::BusinessProfile;
use crate::provider::ProviderKind;
use crate::redact::{Count, RedactedOpt};
use crate::types::{AttemptRecord, ConversationTurn, Pseudonym, RequestFlags};

mod provider;
mod rules;
mod text;
mod when;

pub use provider::{
    LEAD_SCHEMA_NAME, LeadOutputError, ProviderExtractor, lead_json_schema, parse_lead_json,
};
pub use rules::{MAX_RULE_CHARS, MAX_RULE_TURNS, RuleExtractor};

/// A part of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeWindow {
    /// Morning (subah, सुबह).
    Morning,
    /// Afternoon (dopahar, दोपहर).
    Afternoon,
    /// Evening (shaam, शाम).
    Evening,
    /// Night (raat, रात; "tonight").
    Night,
}

impl TimeWindow {
    /// `morning`, `afternoon`, `evening` or `night`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeWindow::Morning => "morning",
            TimeWindow::Afternoon => "afternoon",
            TimeWindow::Evening => "evening",
            TimeWindow::Night => "night",
        }
    }

    /// Parses [`TimeWindow::as_str`].
    pub fn parse(s: &str) -> Option<TimeWindow> {
        match s {
            "morning" => Some(TimeWindow::Morning),
            "afternoon" => Some(TimeWindow::Afternoon),
            "evening" => Some(TimeWindow::Evening),
            "night" => Some(TimeWindow::Night),
            _ => None,
        }
    }
}

/// When in the day the customer would like to come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PreferredTime {
    /// A wall-clock time in the business's time zone. Serialized as `HH:MM`.
    At(Time),
    /// A part of the day. Serialized as its name.
    Window(TimeWindow),
}

impl fmt::Display for PreferredTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreferredTime::At(t) => write!(f, "{:02}:{:02}", t.hour(), t.minute()),
            PreferredTime::Window(w) => f.write_str(w.as_str()),
        }
    }
}

impl PreferredTime {
    /// Parses `HH:MM` (24-hour) or a window name; `None` for anything else.
    pub fn parse(s: &str) -> Option<PreferredTime> {
        let s = s.trim();
        if let Some(w) = TimeWindow::parse(s) {
            return Some(PreferredTime::Window(w));
        }
        let (h, m) = s.split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let h: i8 = h.parse().ok()?;
        let m: i8 = m.parse().ok()?;
        Time::new(h, m, 0, 0).ok().map(PreferredTime::At)
    }
}

impl TryFrom<String> for PreferredTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PreferredTime::parse(&s).ok_or_else(|| "expected HH:MM or a time window".to_owned())
    }
}

impl From<PreferredTime> for String {
    fn from(t: PreferredTime) -> String {
        t.to_string()
    }
}

/// Currency of a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    /// Indian rupee (₹, Rs, rupees, रुपये), minor unit paise.
    #[serde(rename = "INR")]
    Inr,
    /// US dollar ($), minor unit cents.
    #[serde(rename = "USD")]
    Usd,
}

impl Currency {
    /// ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Inr => "INR",
            Currency::Usd => "USD",
        }
    }
}

/// How the customer framed the amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetBound {
    /// An upper limit: "under 2000", "budget 5000 tak", "max 3k".
    AtMost,
    /// An amount: "Rs 1500", "around ₹3k".
    Around,
}

/// What the customer said they can spend.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Budget {
    /// Amount in the currency's minor unit (paise for INR).
    pub amount_minor: u64,
    /// Currency.
    pub currency: Currency,
    /// Limit or amount.
    pub bound: BudgetBound,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("amount_minor", &"<redacted>")
            .field("currency", &self.currency)
            .field("bound", &self.bound)
            .finish()
    }
}

/// Suggested pipeline stage of the lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageHint {
    /// First contact, nothing specific asked yet.
    New,
    /// Asked about a service, a date, a time or a budget, or kept the conversation going.
    Engaged,
    /// Confirmed a booking ("booked", "confirm" after a booking link was sent, or a
    /// booking-link click the caller reported).
    Booked,
    /// Not interested ("not interested", "nahi chahiye").
    Lost,
}

impl StageHint {
    /// `new`, `engaged`, `booked` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            StageHint::New => "new",
            StageHint::Engaged => "engaged",
            StageHint::Booked => "booked",
            StageHint::Lost => "lost",
        }
    }
}

/// Serde for `Option<jiff::civil::Date>` as `YYYY-MM-DD`.
mod opt_date {
    use jiff::civil::Date;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse::<Date>().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// What a conversation says about the lead. `Debug` shows which fields are set, never
/// their values (the name, and what was asked, are personal data).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFields {
    /// The customer's name, as they stated it, else the WhatsApp profile name.
    pub name: Option<String>,
    /// Canonical service name from the business profile.
    pub service: Option<String>,
    /// Preferred date, in the business's calendar.
    #[serde(with = "opt_date", default)]
    pub preferred_date: Option<Date>,
    /// Preferred time of day.
    pub preferred_time: Option<PreferredTime>,
    /// Budget.
    pub budget: Option<Budget>,
    /// Suggested stage.
    pub stage_hint: Option<StageHint>,
}

struct Set(bool);

impl fmt::Debug for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "<set>" } else { "None" })
    }
}

impl fmt::Debug for LeadFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeadFields")
            .field("name", &RedactedOpt(self.name.as_deref()))
            .field("service", &Set(self.service.is_some()))
            .field("preferred_date", &Set(self.preferred_date.is_some()))
            .field("preferred_time", &Set(self.preferred_time.is_some()))
            .field("budget", &Set(self.budget.is_some()))
            .field("stage_hint", &self.stage_hint)
            .finish()
    }
}

impl LeadFields {
    /// The names of the fields that are set, in declaration order.
    pub fn found(&self) -> Vec<FieldName> {
        let mut v = Vec::with_capacity(6);
        let pairs = [
            (self.name.is_some(), FieldName::Name),
            (self.service.is_some(), FieldName::Service),
            (self.preferred_date.is_some(), FieldName::PreferredDate),
            (self.preferred_time.is_some(), FieldName::PreferredTime),
            (self.budget.is_some(), FieldName::Budget),
            (self.stage_hint.is_some(), FieldName::StageHint),
        ];
        for (set, name) in pairs {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// A field of [`LeadFields`], by name only (for ledger entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldName {
    /// [`LeadFields::name`].
    Name,
    /// [`LeadFields::service`].
    Service,
    /// [`LeadFields::preferred_date`].
    PreferredDate,
    /// [`LeadFields::preferred_time`].
    PreferredTime,
    /// [`LeadFields::budget`].
    Budget,
    /// [`LeadFields::stage_hint`].
    StageHint,
}

impl FieldName {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldName::Name => "name",
            FieldName::Service => "service",
            FieldName::PreferredDate => "preferred_date",
            FieldName::PreferredTime => "preferred_time",
            FieldName::Budget => "budget",
            FieldName::StageHint => "stage_hint",
        }
    }
}

/// Who extracted the fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Extractor {
    /// The deterministic [`RuleExtractor`].
    Rules,
    /// An AI provider through [`ProviderExtractor`].
    Provider {
        /// Which provider.
        provider: ProviderKind,
        /// Model that answered.
        model: String,
    },
}

/// Why [`ProviderExtractor`] used the rules instead of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// `flags.allow_providers` was false: no provider was called.
    ProvidersNotAllowed,
    /// The extractor has no provider.
    NoProvider,
    /// Every provider failed (errors, timeouts, deadline).
    ProviderFailed,
    /// A provider answered, but not with a valid lead JSON object.
    InvalidOutput,
}

/// The result of an extraction: the fields, who produced them, and what to ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadExtraction {
    /// The extracted fields (personal data: store, never log).
    pub fields: LeadFields,
    /// Who produced them.
    pub extractor: Extractor,
    /// Which fields were found (names only: safe for the ledger).
    pub fields_found: Vec<FieldName>,
    /// Every provider attempt made, in order (empty for the rules alone).
    pub attempts: Vec<AttemptRecord>,
    /// Set when a [`ProviderExtractor`] fell back to the rules.
    pub fallback: Option<FallbackReason>,
}

impl LeadExtraction {
    pub(crate) fn new(fields: LeadFields, extractor: Extractor) -> Self {
        LeadExtraction {
            fields_found: fields.found(),
            fields,
            extractor,
            attempts: Vec::new(),
            fallback: None,
        }
    }
}

/// Facts the caller knows outside the message text.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadSignals {
    /// The customer's WhatsApp profile name; used when they do not state a name.
    pub profile_name: Option<String>,
    /// A booking link was sent in this conversation (also detected from the turns
    /// when an assistant or staff turn contains one of the profile's booking URLs).
    pub booking_link_sent: bool,
    /// The customer clicked a booking link: the stage is `booked` unless they said they
    /// are not interested.
    pub booking_link_clicked: bool,
}

impl fmt::Debug for LeadSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeadSignals")
            .field("profile_name", &RedactedOpt(self.profile_name.as_deref()))
            .field("booking_link_sent", &self.booking_link_sent)
            .field("booking_link_clicked", &self.booking_link_clicked)
            .finish()
    }
}

/// Everything needed for a provider extraction. Turns are already redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct LeadRequest {
    /// The business's profile (services, time zone).
    pub profile: BusinessProfile,
    /// The conversation, oldest first, including the latest message, redacted.
    pub turns: Vec<ConversationTurn>,
    /// Per-subject pseudonym, sent as `safety_identifier` / `user_id`.
    pub subject_pseudonym: Pseudonym,
    /// Current time: relative dates ("tomorrow", "kal") resolve against it.
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// The same policy flags as replies (`allow_providers`, `store`, pseudonym field,
    /// `max_history_turns`).
    pub flags: RequestFlags,
    /// Caller-known signals.
    pub signals: LeadSignals,
}

impl fmt::Debug for LeadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeadRequest")
            .field("profile", &self.profile)
            .field("turns", &Count(self.turns.len()))
            .field("subject_pseudonym", &self.subject_pseudonym)
            .field("now", &self.now)
            .field("flags", &self.flags)
            .field("signals", &self.signals)
            .finish()
    }
}

impl LeadRequest {
    /// A request with default flags and no signals; validates the profile.
    pub fn new(
        profile: BusinessProfile,
        turns: Vec<ConversationTurn>,
        subject_pseudonym: Pseudonym,
        now: OffsetDateTime,
    ) -> Result<Self, RequestError> {
        profile.validate()?;
        Ok(LeadRequest {
            profile,
            turns,
            subject_pseudonym,
            now,
            flags: RequestFlags::default(),
            signals: LeadSignals::default(),
        })
    }

    /// Replaces the flags.
    pub fn with_flags(mut self, flags: RequestFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Replaces the signals.
    pub fn with_signals(mut self, signals: LeadSignals) -> Self {
        self.signals = signals;
        self
    }
}

/// The local date of `now` in the profile's time zone (UTC if the zone is unknown).
pub(crate) fn local_date(profile: &BusinessProfile, now: OffsetDateTime) -> Date {
    local_date_in(&profile.time_zone().unwrap_or(jiff::tz::TimeZone::UTC), now)
}

/// The local date of `now` in `tz`.
pub(crate) fn local_date_in(tz: &jiff::tz::TimeZone, now: OffsetDateTime) -> Date {
    let ts =
        jiff::Timestamp::from_second(now.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts).date()
}
