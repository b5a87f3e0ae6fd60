//! The business profile a tenant configures: what the assistant may say about the business.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProfileError;
use crate::redact::{Count, Redacted, RedactedOpt};

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// All days, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// English name, capitalised.
    pub fn name(self) -> &'static str {
        match self {
            Weekday::Monday => "Monday",
            Weekday::Tuesday => "Tuesday",
            Weekday::Wednesday => "Wednesday",
            Weekday::Thursday => "Thursday",
            Weekday::Friday => "Friday",
            Weekday::Saturday => "Saturday",
            Weekday::Sunday => "Sunday",
        }
    }

    /// Hindi name in Devanagari.
    pub fn hindi_name(self) -> &'static str {
        match self {
            Weekday::Monday => "सोमवार",
            Weekday::Tuesday => "मंगलवार",
            Weekday::Wednesday => "बुधवार",
            Weekday::Thursday => "गुरुवार",
            Weekday::Friday => "शुक्रवार",
            Weekday::Saturday => "शनिवार",
            Weekday::Sunday => "रविवार",
        }
    }

    /// The following day.
    pub fn next(self) -> Weekday {
        match self {
            Weekday::Monday => Weekday::Tuesday,
            Weekday::Tuesday => Weekday::Wednesday,
            Weekday::Wednesday => Weekday::Thursday,
            Weekday::Thursday => Weekday::Friday,
            Weekday::Friday => Weekday::Saturday,
            Weekday::Saturday => Weekday::Sunday,
            Weekday::Sunday => Weekday::Monday,
        }
    }

    pub(crate) fn from_jiff(d: jiff::civil::Weekday) -> Weekday {
        match d {
            jiff::civil::Weekday::Monday => Weekday::Monday,
            jiff::civil::Weekday::Tuesday => Weekday::Tuesday,
            jiff::civil::Weekday::Wednesday => Weekday::Wednesday,
            jiff::civil::Weekday::Thursday => Weekday::Thursday,
            jiff::civil::Weekday::Friday => Weekday::Friday,
            jiff::civil::Weekday::Saturday => Weekday::Saturday,
            jiff::civil::Weekday::Sunday => Weekday::Sunday,
        }
    }
}

/// A wall-clock time of day in the business's time zone, `00:00` to `24:00` (end of day).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockTime(u16);

impl ClockTime {
    /// Builds a time from hours and minutes; `24:00` is allowed as the end of the day.
    pub fn new(hour: u8, minute: u8) -> Result<Self, ProfileError> {
        if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
            return Err(ProfileError::InvalidTime);
        }
        Ok(ClockTime(u16::from(hour) * 60 + u16::from(minute)))
    }

    /// Parses `H:MM` or `HH:MM`.
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        let (h, m) = s.trim().split_once(':').ok_or(ProfileError::InvalidTime)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(ProfileError::InvalidTime);
        }
        let hour: u8 = h.parse().map_err(|_| ProfileError::InvalidTime)?;
        let minute: u8 = m.parse().map_err(|_| ProfileError::InvalidTime)?;
        ClockTime::new(hour, minute)
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// Hour part (0 to 24).
    pub fn hour(self) -> u16 {
        self.0 / 60
    }

    /// Minute part.
    pub fn minute(self) -> u16 {
        self.0 % 60
    }

    /// Formats as a 12-hour time, e.g. `9:30 AM`, `12 PM`, `midnight`.
    pub fn to_12h(self) -> String {
        let (h, m) = (self.hour(), self.minute());
        if h == 24 || (h == 0 && m == 0) {
            return "midnight".to_owned();
        }
        let suffix = if h < 12 { "AM" } else { "PM" };
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        if m == 0 {
            format!("{h12} {suffix}")
        } else {
            format!("{h12}:{m:02} {suffix}")
        }
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<String> for ClockTime {
    type Error = ProfileError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ClockTime::parse(&s)
    }
}

impl From<ClockTime> for String {
    fn from(t: ClockTime) -> String {
        t.to_string()
    }
}

/// One opening interval within a day, `open < close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// Opening time.
    pub open: ClockTime,
    /// Closing time (exclusive).
    pub close: ClockTime,
}

impl Interval {
    /// Builds an interval, checking `open < close`.
    pub fn new(open: ClockTime, close: ClockTime) -> Result<Self, ProfileError> {
        if open >= close {
            return Err(ProfileError::InvalidInterval);
        }
        Ok(Interval { open, close })
    }

    /// Whether the minute-of-day falls inside the interval.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        self.open.minutes() <= minute_of_day && minute_of_day < self.close.minutes()
    }
}

/// The weekly opening schedule. A day with no interval is a closed day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyHours {
    /// Monday's intervals.
    #[serde(default)]
    pub monday: Vec<Interval>,
    /// Tuesday's intervals.
    #[serde(default)]
    pub tuesday: Vec<Interval>,
    /// Wednesday's intervals.
    #[serde(default)]
    pub wednesday: Vec<Interval>,
    /// Thursday's intervals.
    #[serde(default)]
    pub thursday: Vec<Interval>,
    /// Friday's intervals.
    #[serde(default)]
    pub friday: Vec<Interval>,
    /// Saturday's intervals.
    #[serde(default)]
    pub saturday: Vec<Interval>,
    /// Sunday's intervals.
    #[serde(default)]
    pub sunday: Vec<Interval>,
}

impl WeeklyHours {
    /// The intervals of one day (empty: closed).
    pub fn day(&self, day: Weekday) -> &[Interval] {
        match day {
            Weekday::Monday => &self.monday,
            Weekday::Tuesday => &self.tuesday,
            Weekday::Wednesday => &self.wednesday,
            Weekday::Thursday => &self.thursday,
            Weekday::Friday => &self.friday,
            Weekday::Saturday => &self.saturday,
            Weekday::Sunday => &self.sunday,
        }
    }

    /// Mutable access to one day's intervals.
    pub fn day_mut(&mut self, day: Weekday) -> &mut Vec<Interval> {
        match day {
            Weekday::Monday => &mut self.monday,
            Weekday::Tuesday => &mut self.tuesday,
            Weekday::Wednesday => &mut self.wednesday,
            Weekday::Thursday => &mut self.thursday,
            Weekday::Friday => &mut self.friday,
            Weekday::Saturday => &mut self.saturday,
            Weekday::Sunday => &mut self.sunday,
        }
    }

    /// Whether the business is closed all day.
    pub fn is_closed(&self, day: Weekday) -> bool {
        self.day(day).is_empty()
    }

    /// Checks every day's intervals are well-formed, sorted and non-overlapping.
    pub fn validate(&self) -> Result<(), ProfileError> {
        for day in Weekday::ALL {
            let intervals = self.day(day);
            for iv in intervals {
                if iv.open >= iv.close {
                    return Err(ProfileError::InvalidInterval);
                }
            }
            for pair in intervals.windows(2) {
                if let [a, b] = pair
                    && a.close > b.open
                {
                    return Err(ProfileError::OverlappingIntervals);
                }
            }
        }
        Ok(())
    }
}

/// A service the business offers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Service name, e.g. "Haircut".
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Display price, e.g. "₹300" (free text so any currency or range works).
    #[serde(default)]
    pub price: Option<String>,
    /// Typical duration in minutes.
    #[serde(default)]
    pub duration_minutes: Option<u32>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &Redacted(&self.name))
            .field("description", &Redacted(&self.description))
            .field("price", &self.price.is_some())
            .field("duration_minutes", &self.duration_minutes)
            .finish()
    }
}

/// A staff member customers may ask about.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    /// Name as customers know it.
    pub name: String,
    /// Role, e.g. "Senior stylist".
    #[serde(default)]
    pub role: String,
}

impl fmt::Debug for StaffMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffMember")
            .field("name", &Redacted(&self.name))
            .field("role", &Redacted(&self.role))
            .finish()
    }
}

/// A link where customers can book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingLink {
    /// Label, e.g. "Book online".
    pub label: String,
    /// `https://` (or `http://`) URL.
    pub url: String,
}

/// Everything the assistant may say about a business.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessProfile {
    /// Business name.
    pub name: String,
    /// Kind of business, e.g. "hair salon".
    pub business_type: String,
    /// IANA time zone name, e.g. `Asia/Kolkata`.
    pub timezone: String,
    /// Weekly opening hours.
    #[serde(default)]
    pub hours: WeeklyHours,
    /// Services offered.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Staff customers may ask about.
    #[serde(default)]
    pub staff: Vec<StaffMember>,
    /// Booking links.
    #[serde(default)]
    pub booking_links: Vec<BookingLink>,
    /// Greeting used for hello/hi/namaste.
    #[serde(default)]
    pub greeting: Option<String>,
    /// Message sent when the customer asks for a human.
    pub handoff_message: String,
    /// Languages the business answers in (BCP 47 primary tags such as `en`, `hi`).
    #[serde(default)]
    pub languages: Vec<String>,
    /// Address or directions, if the business wants to share them.
    #[serde(default)]
    pub location: Option<String>,
    /// Business contact (phone, e-mail), if the business wants to share it.
    #[serde(default)]
    pub contact: Option<String>,
}

impl fmt::Debug for BusinessProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusinessProfile")
            .field("name", &Redacted(&self.name))
            .field("business_type", &self.business_type)
            .field("timezone", &self.timezone)
            .field("hours", &self.hours)
            .field("services", &Count(self.services.len()))
            .field("staff", &Count(self.staff.len()))
            .field("booking_links", &Count(self.booking_links.len()))
            .field("greeting", &RedactedOpt(self.greeting.as_deref()))
            .field("handoff_message", &Redacted(&self.handoff_message))
            .field("languages", &self.languages)
            .field("location", &RedactedOpt(self.location.as_deref()))
            .field("contact", &RedactedOpt(self.contact.as_deref()))
            .finish()
    }
}

const MAX_FIELD: usize = 2_000;

fn check_text(field: &'static str, s: &str, required: bool) -> Result<(), ProfileError> {
    if required && s.trim().is_empty() {
        return Err(ProfileError::Empty(field));
    }
    if s.chars().count() > MAX_FIELD {
        return Err(ProfileError::TooLong(field));
    }
    Ok(())
}

impl BusinessProfile {
    /// Parses a profile from JSON and validates it.
    pub fn from_json(json: &str) -> Result<Self, ProfileError> {
        let p: BusinessProfile =
            serde_json::from_str(json).map_err(|e| ProfileError::Json(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the profile: required fields present, lengths bounded, time zone known,
    /// hours well-formed, service names unique, booking links are http(s) URLs,
    /// language tags plausible.
    pub fn validate(&self) -> Result<(), ProfileError> {
        check_text("name", &self.name, true)?;
        check_text("business_type", &self.business_type, false)?;
        check_text("handoff_message", &self.handoff_message, true)?;
        if let Some(g) = &self.greeting {
            check_text("greeting", g, true)?;
        }
        if let Some(l) = &self.location {
            check_text("location", l, true)?;
        }
        if let Some(c) = &self.contact {
            check_text("contact", c, true)?;
        }
        self.time_zone()?;
        self.hours.validate()?;
        let mut seen: Vec<String> = Vec::with_capacity(self.services.len());
        for s in &self.services {
            check_text("services.name", &s.name, true)?;
            check_text("services.description", &s.description, false)?;
            if let Some(p) = &s.price {
                check_text("services.price", p, true)?;
            }
            let key = s.name.trim().to_lowercase();
            if seen.contains(&key) {
                return Err(ProfileError::DuplicateService);
            }
            seen.push(key);
        }
        for m in &self.staff {
            check_text("staff.name", &m.name, true)?;
            check_text("staff.role", &m.role, false)?;
        }
        for b in &self.booking_links {
            check_text("booking_links.label", &b.label, true)?;
            let url = b.url.trim();
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .ok_or(ProfileError::InvalidUrl)?;
            if rest.is_empty() || url.chars().any(char::is_whitespace) || url.len() > MAX_FIELD {
                return Err(ProfileError::InvalidUrl);
            }
        }
        for l in &self.languages {
            let ok = (2..=8).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(ProfileError::InvalidLanguage);
            }
        }
        Ok(())
    }

    /// Resolves the IANA time zone (bundled database, works without `/usr/share/zoneinfo`).
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, ProfileError> {
        jiff::tz::TimeZone::get(self.timezone.trim()).map_err(|_| ProfileError::UnknownTimeZone)
    }

    /// Whether the profile lists the language (by primary tag, e.g. `hi` matches `hi-IN`).
    pub fn speaks(&self, primary: &str) -> bool {
        self.languages.iter().any(|l| {
            l.split('-')
                .next()
                .is_some_and(|p| p.eq_ignore_ascii_case(primary))
        })
    }
}
