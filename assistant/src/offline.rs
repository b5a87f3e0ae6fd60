//! The deterministic offline assistant: answers from the business profile alone.
//!
//! Same request, same answer: no randomness, no network, no clock other than the
//! request's `now`.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use time::OffsetDateTime;

use crate::intent::{HoursQuery, Intent, Normalized, detect_normalized};
use crate::profile::{BusinessProfile, ClockTime, Interval, Service, StaffMember, Weekday};
use crate::types::ReplyRequest;

/// Reply language: Hindi (Devanagari) when the customer wrote Devanagari and the
/// business lists `hi`; English otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// English.
    English,
    /// Hindi in Devanagari.
    Hindi,
}

/// An offline answer.
#[derive(Clone, PartialEq, Eq)]
pub struct OfflineAnswer {
    /// Text to send.
    pub text: String,
    /// Detected intent.
    pub intent: Intent,
    /// Language of the text.
    pub lang: Lang,
}

impl std::fmt::Debug for OfflineAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineAnswer")
            .field("text", &crate::redact::Redacted(&self.text))
            .field("intent", &self.intent)
            .field("lang", &self.lang)
            .finish()
    }
}

/// The deterministic responder.
#[derive(Clone, Copy, Debug, Default)]
pub struct OfflineAssistant;

/// The local wall-clock position of `now` in the business's time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalNow {
    /// Local weekday.
    pub weekday: Weekday,
    /// Minutes since local midnight.
    pub minute_of_day: u16,
}

impl LocalNow {
    /// Converts `now` to local time in `tz`.
    pub fn new(now: OffsetDateTime, tz: &TimeZone) -> LocalNow {
        let ts = jiff::Timestamp::from_second(now.unix_timestamp())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let dt = tz.to_datetime(ts);
        let minute_of_day =
            u16::try_from(i32::from(dt.hour()) * 60 + i32::from(dt.minute())).unwrap_or(0);
        LocalNow {
            weekday: Weekday::from_jiff(dt.weekday()),
            minute_of_day,
        }
    }

    /// Local now for a profile; an unknown zone falls back to UTC.
    pub fn for_profile(profile: &BusinessProfile, now: OffsetDateTime) -> LocalNow {
        let tz = profile.time_zone().unwrap_or(TimeZone::UTC);
        LocalNow::new(now, &tz)
    }
}

fn tr(lang: Lang, en: &str, hi: &str) -> String {
    match lang {
        Lang::English => en.to_owned(),
        Lang::Hindi => hi.to_owned(),
    }
}

fn day_name(lang: Lang, d: Weekday) -> &'static str {
    match lang {
        Lang::English => d.name(),
        Lang::Hindi => d.hindi_name(),
    }
}

fn intervals_text(intervals: &[Interval]) -> String {
    let parts: Vec<String> = intervals
        .iter()
        .map(|iv| format!("{} – {}", iv.open.to_12h(), iv.close.to_12h()))
        .collect();
    parts.join(" and ")
}

fn day_hours_sentence(p: &BusinessProfile, lang: Lang, d: Weekday, label: Option<&str>) -> String {
    let intervals = p.hours.day(d);
    let name = day_name(lang, d);
    match (lang, intervals.is_empty(), label) {
        (Lang::English, true, None) => format!("We're closed on {name}."),
        (Lang::English, true, Some(l)) => format!("{l} ({name}) we're closed."),
        (Lang::English, false, None) => {
            format!("On {name} we're open {}.", intervals_text(intervals))
        }
        (Lang::English, false, Some(l)) => {
            format!("{l} ({name}) we're open {}.", intervals_text(intervals))
        }
        (Lang::Hindi, true, None) => format!("{name} को हम बंद रहते हैं।"),
        (Lang::Hindi, true, Some(l)) => format!("{l} ({name}) हम बंद हैं।"),
        (Lang::Hindi, false, None) => {
            format!("{name} को हम {} खुले रहते हैं।", intervals_text(intervals))
        }
        (Lang::Hindi, false, Some(l)) => {
            format!("{l} ({name}) हम {} खुले हैं।", intervals_text(intervals))
        }
    }
}

fn week_text(p: &BusinessProfile, lang: Lang) -> String {
    let mut out = tr(lang, "Our opening hours:", "हमारा समय:");
    for d in Weekday::ALL {
        let iv = p.hours.day(d);
        let hours = if iv.is_empty() {
            tr(lang, "closed", "बंद")
        } else {
            intervals_text(iv)
        };
        let _ = write!(out, "\n{}: {}", day_name(lang, d), hours);
    }
    out
}

/// The next opening after `now`: `(days ahead, weekday, time)`.
fn next_opening(p: &BusinessProfile, now: LocalNow) -> Option<(u8, Weekday, ClockTime)> {
    let mut day = now.weekday;
    for ahead in 0..=7u8 {
        for iv in p.hours.day(day) {
            if ahead > 0 || iv.open.minutes() > now.minute_of_day {
                return Some((ahead, day, iv.open));
            }
        }
        day = day.next();
    }
    None
}

fn now_text(p: &BusinessProfile, lang: Lang, now: LocalNow) -> String {
    if let Some(iv) = p
        .hours
        .day(now.weekday)
        .iter()
        .find(|iv| iv.contains(now.minute_of_day))
    {
        let close = iv.close.to_12h();
        return match lang {
            Lang::English => format!("Yes, we're open now until {close}."),
            Lang::Hindi => format!("हां, हम अभी खुले हैं, {close} तक।"),
        };
    }
    match next_opening(p, now) {
        Some((ahead, day, at)) => {
            let at = at.to_12h();
            match (lang, ahead) {
                (Lang::English, 0) => {
                    format!("We're closed right now. We open again today at {at}.")
                }
                (Lang::English, 1) => format!(
                    "We're closed right now. We open tomorrow ({}) at {at}.",
                    day.name()
                ),
                (Lang::English, _) => {
                    format!("We're closed right now. We open on {} at {at}.", day.name())
                }
                (Lang::Hindi, 0) => format!("हम अभी बंद हैं। आज {at} बजे फिर खुलेंगे।"),
                (Lang::Hindi, 1) => format!("हम अभी बंद हैं। कल ({}) {at} बजे खुलेंगे।", day.hindi_name()),
                (Lang::Hindi, _) => format!("हम अभी बंद हैं। {} को {at} बजे खुलेंगे।", day.hindi_name()),
            }
        }
        None => tr(
            lang,
            "We're closed right now and have no opening hours listed.",
            "हम अभी बंद हैं और हमारा समय अभी तय नहीं है।",
        ),
    }
}

fn hours_text(p: &BusinessProfile, lang: Lang, q: HoursQuery, now: LocalNow) -> String {
    if Weekday::ALL.iter().all(|d| p.hours.is_closed(*d)) {
        return tr(
            lang,
            "We haven't listed our opening hours yet. Please ask and our team will let you know.",
            "हमारा समय अभी दर्ज नहीं है। पूछिए, हमारी टीम बता देगी।",
        );
    }
    match q {
        HoursQuery::Day(d) => day_hours_sentence(p, lang, d, None),
        HoursQuery::Today => {
            day_hours_sentence(p, lang, now.weekday, Some(&tr(lang, "Today", "आज")))
        }
        HoursQuery::Tomorrow => day_hours_sentence(
            p,
            lang,
            now.weekday.next(),
            Some(&tr(lang, "Tomorrow", "कल")),
        ),
        HoursQuery::Now => now_text(p, lang, now),
        HoursQuery::Week => format!("{}\n{}", now_text(p, lang, now), week_text(p, lang)),
    }
}

fn service_line(s: &Service) -> String {
    let mut line = format!("• {}", s.name);
    if let Some(price) = &s.price {
        let _ = write!(line, " — {price}");
    }
    if let Some(m) = s.duration_minutes {
        let _ = write!(line, " ({m} min)");
    }
    line
}

fn service_detail(s: &Service, lang: Lang) -> String {
    let mut out = s.name.clone();
    if !s.description.trim().is_empty() {
        let _ = write!(out, ": {}", s.description.trim());
    }
    if let Some(price) = &s.price {
        let _ = write!(out, "\n{} {price}", tr(lang, "Price:", "दाम:"));
    }
    if let Some(m) = s.duration_minutes {
        let _ = match lang {
            Lang::English => write!(out, "\nTakes about {m} minutes."),
            Lang::Hindi => write!(out, "\nलगभग {m} मिनट लगते हैं।"),
        };
    }
    out
}

/// Whether every word of `name` appears in the message (names of 3+ characters).
fn mentions_name(n: &Normalized, name: &str) -> bool {
    let name = Normalized::new(name);
    let mut name_words = name.words().filter(|w| w.chars().count() >= 3).peekable();
    if name_words.peek().is_none() {
        return false;
    }
    let words: Vec<&str> = n.words().collect();
    name_words.all(|nw| {
        words
            .iter()
            .any(|w| *w == nw || (w.starts_with(nw) && w.len() <= nw.len() + 1))
    })
}

fn mentioned_service<'a>(p: &'a BusinessProfile, n: &Normalized) -> Option<&'a Service> {
    p.services.iter().find(|s| mentions_name(n, &s.name))
}

fn mentioned_staff<'a>(p: &'a BusinessProfile, n: &Normalized) -> Option<&'a StaffMember> {
    p.staff.iter().find(|s| mentions_name(n, &s.name))
}

fn services_text(p: &BusinessProfile, lang: Lang, n: &Normalized) -> String {
    if let Some(s) = mentioned_service(p, n) {
        return service_detail(s, lang);
    }
    if p.services.is_empty() {
        return format!(
            "{} {}",
            tr(
                lang,
                "We haven't listed our services here yet.",
                "हमारी सेवाएं अभी यहां दर्ज नहीं हैं।"
            ),
            p.handoff_message
        );
    }
    let mut out = tr(lang, "Here's what we offer:", "हमारी सेवाएं:");
    for s in &p.services {
        out.push('\n');
        out.push_str(&service_line(s));
    }
    out
}

fn staff_text(p: &BusinessProfile, lang: Lang, n: &Normalized) -> String {
    if let Some(m) = mentioned_staff(p, n) {
        return match (lang, m.role.trim().is_empty()) {
            (Lang::English, false) => format!("{} is our {}.", m.name, m.role.trim()),
            (Lang::English, true) => format!("{} is part of our team.", m.name),
            (Lang::Hindi, false) => format!("{} हमारे {} हैं।", m.name, m.role.trim()),
            (Lang::Hindi, true) => format!("{} हमारी टीम में हैं।", m.name),
        };
    }
    if p.staff.is_empty() {
        return format!(
            "{} {}",
            tr(
                lang,
                "We haven't listed our team here.",
                "हमारी टीम की जानकारी यहां नहीं है।"
            ),
            p.handoff_message
        );
    }
    let mut out = tr(lang, "Our team:", "हमारी टीम:");
    for m in &p.staff {
        if m.role.trim().is_empty() {
            let _ = write!(out, "\n• {}", m.name);
        } else {
            let _ = write!(out, "\n• {} — {}", m.name, m.role.trim());
        }
    }
    out
}

fn booking_text(p: &BusinessProfile, lang: Lang) -> String {
    match p.booking_links.as_slice() {
        [] => tr(
            lang,
            "To book, reply with the service and a day and time that suit you, and our team will confirm.",
            "बुक करने के लिए सेवा, दिन और समय लिखकर भेजें, हमारी टीम पुष्टि करेगी।",
        ),
        [one] => match lang {
            Lang::English => format!("You can book here: {}", one.url.trim()),
            Lang::Hindi => format!("आप यहां बुक कर सकते हैं: {}", one.url.trim()),
        },
        many => {
            let mut out = tr(lang, "You can book here:", "आप यहां बुक कर सकते हैं:");
            for b in many {
                let _ = write!(out, "\n• {}: {}", b.label.trim(), b.url.trim());
            }
            out
        }
    }
}

fn capabilities(p: &BusinessProfile, lang: Lang) -> String {
    let mut topics: Vec<String> = vec![
        tr(lang, "opening hours", "समय"),
        tr(lang, "services and prices", "सेवाएं और दाम"),
        tr(lang, "booking", "बुकिंग"),
    ];
    if !p.staff.is_empty() {
        topics.push(tr(lang, "our team", "टीम"));
    }
    if p.location.is_some() {
        topics.push(tr(lang, "location", "पता"));
    }
    if p.contact.is_some() {
        topics.push(tr(lang, "contact details", "संपर्क"));
    }
    let list = topics.join(", ");
    match lang {
        Lang::English => {
            format!("I can help with {list}. To talk to a person, just say \"human\".")
        }
        Lang::Hindi => {
            format!("मैं {list} के बारे में बता सकता हूं। किसी व्यक्ति से बात करने के लिए \"इंसान\" लिखें।")
        }
    }
}

/// Detects the intent, then turns `Other` into `Services` or `Staff` when the message
/// names one of the profile's services or staff ("is Asha in?", "facial?").
pub fn detect_with_profile(n: &Normalized, profile: &BusinessProfile) -> Intent {
    match detect_normalized(n) {
        Intent::Other if mentioned_service(profile, n).is_some() => Intent::Services,
        Intent::Other if mentioned_staff(profile, n).is_some() => Intent::Staff,
        other => other,
    }
}

impl OfflineAssistant {
    /// Answers a request from the profile alone.
    pub fn answer(&self, req: &ReplyRequest) -> OfflineAnswer {
        let n = Normalized::new(&req.customer_message);
        let intent = detect_with_profile(&n, &req.profile);
        self.answer_intent(req, &n, intent)
    }

    /// Answers with an intent the caller already detected.
    pub fn answer_intent(
        &self,
        req: &ReplyRequest,
        n: &Normalized,
        intent: Intent,
    ) -> OfflineAnswer {
        let p = &req.profile;
        let lang = if n.has_devanagari() && p.speaks("hi") {
            Lang::Hindi
        } else {
            Lang::English
        };
        let text = match intent {
            Intent::Greeting => {
                let greeting = p.greeting.clone().unwrap_or_else(|| match lang {
                    Lang::English => format!("Hello! Welcome to {}.", p.name),
                    Lang::Hindi => format!("नमस्ते! {} में आपका स्वागत है।", p.name),
                });
                format!("{greeting}\n{}", capabilities(p, lang))
            }
            Intent::Thanks => tr(
                lang,
                "You're welcome! Anything else I can help with?",
                "आपका स्वागत है! और कुछ मदद चाहिए?",
            ),
            Intent::OpeningHours(q) => hours_text(p, lang, q, LocalNow::for_profile(p, req.now)),
            Intent::Services => services_text(p, lang, n),
            Intent::Staff => staff_text(p, lang, n),
            Intent::Booking => booking_text(p, lang),
            Intent::Location => match &p.location {
                Some(l) => match lang {
                    Lang::English => format!("You can find us at: {}", l.trim()),
                    Lang::Hindi => format!("हमारा पता: {}", l.trim()),
                },
                None => format!(
                    "{} {}",
                    tr(
                        lang,
                        "We haven't listed our address here.",
                        "हमारा पता यहां दर्ज नहीं है।"
                    ),
                    p.handoff_message
                ),
            },
            Intent::Contact => match &p.contact {
                Some(c) => match lang {
                    Lang::English => format!("You can reach us at: {}", c.trim()),
                    Lang::Hindi => format!("हमसे संपर्क करें: {}", c.trim()),
                },
                None => format!(
                    "{} {}",
                    tr(
                        lang,
                        "You're already talking to us here.",
                        "आप यहीं हमसे बात कर रहे हैं।"
                    ),
                    p.handoff_message
                ),
            },
            Intent::Handoff => p.handoff_message.clone(),
            Intent::OptOut => match lang {
                Lang::English => format!(
                    "Understood. We've noted that you don't want further messages from {}.",
                    p.name
                ),
                Lang::Hindi => format!(
                    "ठीक है। हमने नोट कर लिया है कि आप {} से और संदेश नहीं चाहते।",
                    p.name
                ),
            },
            Intent::DeleteMyData => match lang {
                Lang::English => format!(
                    "We've received your request to delete your data. {} will process it and confirm to you here.",
                    p.name
                ),
                Lang::Hindi => format!(
                    "आपका डेटा हटाने का अनुरोध मिल गया है। {} इसे पूरा करके यहां पुष्टि करेगा।",
                    p.name
                ),
            },
            Intent::ExportMyData => match lang {
                Lang::English => format!(
                    "We've received your request for a copy of your data. {} will process it and send it to you.",
                    p.name
                ),
                Lang::Hindi => format!(
                    "आपके डेटा की कॉपी का अनुरोध मिल गया है। {} इसे तैयार करके आपको भेजेगा।",
                    p.name
                ),
            },
            Intent::Other => {
                let sorry = tr(
                    lang,
                    "Sorry, I didn't quite get that.",
                    "माफ़ कीजिए, मैं समझ नहीं पाया।",
                );
                format!("{sorry} {}", capabilities(p, lang))
            }
        };
        OfflineAnswer { text, intent, lang }
    }
}
