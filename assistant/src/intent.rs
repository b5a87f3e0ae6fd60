//! Keyword intent detection in English, Hindi (Devanagari) and romanized Hindi.
//!
//! Text is lower-cased, punctuation and emoji become spaces, Devanagari nukta and
//! chandrabindu are folded, and the result is split into words. Patterns are word
//! sequences; a word ending in `*` matches by prefix (`book*` matches "booking").

use serde::{Deserialize, Serialize};

use crate::profile::Weekday;

/// Which opening hours the customer asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "when", content = "day")]
pub enum HoursQuery {
    /// The whole week.
    Week,
    /// "Are you open now?"
    Now,
    /// Today.
    Today,
    /// Tomorrow.
    Tomorrow,
    /// A named weekday.
    Day(Weekday),
}

/// What the customer wants, detected locally without any provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "query")]
pub enum Intent {
    /// Hello / hi / namaste.
    Greeting,
    /// Thanks.
    Thanks,
    /// Opening hours.
    OpeningHours(HoursQuery),
    /// Services and prices.
    Services,
    /// Staff.
    Staff,
    /// How to book.
    Booking,
    /// Where the business is.
    Location,
    /// How to contact the business.
    Contact,
    /// Wants a human. The caller must route the conversation to staff.
    Handoff,
    /// Wants no more messages. The caller must record the opt-out.
    OptOut,
    /// Wants their data erased. The caller must open an erasure request.
    DeleteMyData,
    /// Wants a copy of their data. The caller must open an access request.
    ExportMyData,
    /// Anything else.
    Other,
}

impl Intent {
    /// Opt-out, erasure or access: a data-subject request the caller must act on.
    pub fn is_rights_request(self) -> bool {
        matches!(
            self,
            Intent::OptOut | Intent::DeleteMyData | Intent::ExportMyData
        )
    }

    /// Intents answered locally and never sent to a provider.
    pub fn is_handled_locally(self) -> bool {
        self.is_rights_request() || self == Intent::Handoff
    }
}

/// A customer message, normalized into words.
#[derive(Clone, Debug)]
pub struct Normalized {
    text: String,
    /// Byte ranges of the words in `text`.
    spans: Vec<(usize, usize)>,
    devanagari: bool,
}

impl Normalized {
    /// Normalizes text: lower case, punctuation and emoji to spaces, nukta and
    /// chandrabindu folded.
    pub fn new(input: &str) -> Self {
        let mut text = String::with_capacity(input.len() + 1);
        let mut devanagari = false;
        let mut last_space = true;
        for c in input.chars() {
            let is_deva =
                ('\u{0900}'..='\u{097F}').contains(&c) && c != '\u{0964}' && c != '\u{0965}';
            if is_deva {
                devanagari = true;
                match c {
                    // nukta: फ़ -> फ
                    '\u{093C}' => {}
                    // chandrabindu -> anusvara: कहाँ -> कहां
                    '\u{0901}' => text.push('\u{0902}'),
                    _ => text.push(c),
                }
                last_space = false;
            } else if c == '\'' || c == '\u{2019}' {
                // what's -> whats
            } else if c.is_alphanumeric() {
                for l in c.to_lowercase() {
                    text.push(l);
                }
                last_space = false;
            } else if !last_space {
                text.push(' ');
                last_space = true;
            }
        }
        if text.ends_with(' ') {
            text.pop();
        }
        let mut spans = Vec::new();
        let mut start = 0;
        for w in text.split(' ') {
            if !w.is_empty() {
                spans.push((start, start + w.len()));
            }
            start += w.len() + 1;
        }
        Normalized {
            text,
            spans,
            devanagari,
        }
    }

    fn word(&self, i: usize) -> &str {
        self.spans
            .get(i)
            .and_then(|&(a, b)| self.text.get(a..b))
            .unwrap_or("")
    }

    /// Position of the first occurrence of the phrase pattern.
    fn phrase_at(&self, phrase: &str) -> Option<usize> {
        let n = phrase.split(' ').count();
        let len = self.spans.len();
        if n == 0 || n > len {
            return None;
        }
        (0..=len - n).find(|&start| {
            phrase
                .split(' ')
                .enumerate()
                .all(|(k, p)| word_match(self.word(start + k), p))
        })
    }

    /// The normalized text, words separated by single spaces.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the input contained Devanagari.
    pub fn has_devanagari(&self) -> bool {
        self.devanagari
    }

    /// The words.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        (0..self.spans.len()).map(|i| self.word(i))
    }

    /// Whether any pattern occurs (see module docs for the pattern syntax).
    pub fn has_any(&self, patterns: &[&str]) -> bool {
        patterns.iter().any(|p| self.phrase_at(p).is_some())
    }

    /// Whether the whole message is one of the patterns' words (ignoring filler words).
    fn is_only(&self, words_allowed: &[&str], filler: &[&str]) -> bool {
        let mut any = false;
        for w in self.words() {
            if words_allowed.iter().any(|p| word_match(w, p)) {
                any = true;
            } else if !filler.contains(&w) {
                return false;
            }
        }
        any
    }
}

fn word_match(word: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => word == pattern,
    }
}

const DATA_OBJECTS: &[&str] = &[
    "data",
    "information",
    "info",
    "details",
    "personal details",
    "records",
    "history",
    "chats",
    "chat history",
    "messages",
    "डेटा",
    "डाटा",
    "जानकारी",
    "रिकॉर्ड",
    "रिकार्ड",
];

const DELETE_VERBS: &[&str] = &[
    "delete*",
    "erase*",
    "remove*",
    "wipe*",
    "hatao",
    "hata",
    "hatado",
    "hata do",
    "hatana",
    "mitao",
    "mita",
    "mitado",
    "mita do",
    "हटाओ",
    "हटा",
    "हटाएं",
    "हटाइए",
    "मिटाओ",
    "मिटा",
    "मिटाएं",
    "डिलीट",
];

const DELETE_PHRASES: &[&str] = &[
    "forget me",
    "right to be forgotten",
    "right to erasure",
    "delete my account",
    "delete me",
];

const EXPORT_VERBS: &[&str] = &[
    "export*",
    "download*",
    "copy",
    "send me",
    "give me",
    "access",
    "bhejo",
    "bhej do",
    "dikhao",
    "chahiye",
    "data do",
    "भेजो",
    "भेज दो",
    "दिखाओ",
    "चाहिए",
    "डेटा दो",
    "कॉपी",
];

const EXPORT_PHRASES: &[&str] = &[
    "what data",
    "which data",
    "what information do you have",
    "what do you know about me",
    "data about me",
    "data you hold",
    "data you have",
];

const OPT_OUT_PHRASES: &[&str] = &[
    "unsubscrib*",
    "opt out",
    "optout",
    "stop messag*",
    "stop send*",
    "stop texting",
    "stop contacting",
    "no more messages",
    "dont message me",
    "dont text me",
    "band karo",
    "band kar do",
    "band kardo",
    "band kijiye",
    "message band",
    "messages band",
    "msg band",
    "mat bhejo",
    "mat bhejna",
    "बंद करो",
    "बंद कर दो",
    "बंद करें",
    "बंद कीजिए",
    "मत भेजो",
    "मत भेजें",
    "अनसब्सक्राइब",
];

const OPT_OUT_SINGLE: &[&str] = &["stop", "unsubscribe", "end", "quit", "band", "बंद", "रोको"];
const FILLER: &[&str] = &[
    "please",
    "pls",
    "plz",
    "all",
    "it",
    "now",
    "ok",
    "okay",
    "karo",
    "kro",
    "करो",
    "कृपया",
];

const HANDOFF_PHRASES: &[&str] = &[
    "human",
    "humans",
    "real person",
    "actual person",
    "live person",
    "a person",
    "agent",
    "agents",
    "manager",
    "owner",
    "representative",
    "operator",
    "customer care",
    "customer service",
    "customer support",
    "support team",
    "talk to someone",
    "speak to someone",
    "talk to somebody",
    "speak to somebody",
    "call me",
    "call back",
    "callback",
    "insaan",
    "insan",
    "asli aadmi",
    "baat karni",
    "baat karna",
    "baat karao",
    "baat kara do",
    "इंसान",
    "मैनेजर",
    "एजेंट",
    "मालिक",
    "बात करनी",
    "बात करना",
    "बात कराओ",
    "बात करवाओ",
];

const BOOKING_PHRASES: &[&str] = &[
    "book*",
    "appointment*",
    "appoint",
    "apointment*",
    "reserv*",
    "schedule",
    "slot*",
    "बुक*",
    "अपॉइंटमेंट",
    "अपाइंटमेंट",
    "अपॉइंटमेंट",
];

const HOURS_PHRASES: &[&str] = &[
    "time",
    "times",
    "timing*",
    "hour*",
    "open*",
    "close*",
    "closing",
    "shut",
    "kab",
    "khul*",
    "khol*",
    "band ho*",
    "band rah*",
    "samay",
    "samai",
    "baje",
    "समय",
    "टाइम",
    "टाइमिंग",
    "खुल*",
    "खोल*",
    "बंद हो*",
    "बंद रह*",
    "कब",
    "बजे",
];

const NOW_PHRASES: &[&str] = &[
    "now",
    "right now",
    "currently",
    "at the moment",
    "abhi",
    "अभी",
    "are you open",
    "r u open",
    "you open",
    "open hai",
    "open ho",
    "khule ho",
    "khula hai",
    "khule hai",
    "खुला है",
    "खुले हो",
    "खुले हैं",
];

const TODAY_PHRASES: &[&str] = &["today", "tonight", "aaj", "आज"];
const TOMORROW_PHRASES: &[&str] = &["tomorrow", "tmrw", "tmr", "kal", "कल"];

const WEEKDAYS: &[(&str, Weekday)] = &[
    ("monday*", Weekday::Monday),
    ("mon", Weekday::Monday),
    ("somvar", Weekday::Monday),
    ("somwar", Weekday::Monday),
    ("सोमवार", Weekday::Monday),
    ("tuesday*", Weekday::Tuesday),
    ("tue", Weekday::Tuesday),
    ("tues", Weekday::Tuesday),
    ("mangalvar", Weekday::Tuesday),
    ("mangalwar", Weekday::Tuesday),
    ("मंगलवार", Weekday::Tuesday),
    ("wednesday*", Weekday::Wednesday),
    ("wed", Weekday::Wednesday),
    ("budhvar", Weekday::Wednesday),
    ("budhwar", Weekday::Wednesday),
    ("बुधवार", Weekday::Wednesday),
    ("thursday*", Weekday::Thursday),
    ("thu", Weekday::Thursday),
    ("thurs", Weekday::Thursday),
    ("guruvar", Weekday::Thursday),
    ("guruwar", Weekday::Thursday),
    ("brihaspativar", Weekday::Thursday),
    ("गुरुवार", Weekday::Thursday),
    ("बृहस्पतिवार", Weekday::Thursday),
    ("friday*", Weekday::Friday),
    ("fri", Weekday::Friday),
    ("shukravar", Weekday::Friday),
    ("shukrawar", Weekday::Friday),
    ("शुक्रवार", Weekday::Friday),
    ("saturday*", Weekday::Saturday),
    ("sat", Weekday::Saturday),
    ("shanivar", Weekday::Saturday),
    ("shaniwar", Weekday::Saturday),
    ("शनिवार", Weekday::Saturday),
    ("sunday*", Weekday::Sunday),
    ("sun", Weekday::Sunday),
    ("ravivar", Weekday::Sunday),
    ("raviwar", Weekday::Sunday),
    ("itwar", Weekday::Sunday),
    ("itvar", Weekday::Sunday),
    ("रविवार", Weekday::Sunday),
    ("इतवार", Weekday::Sunday),
];

const SERVICES_PHRASES: &[&str] = &[
    "servic*",
    "price*",
    "pricing",
    "cost*",
    "rate",
    "rates",
    "charge*",
    "fee",
    "fees",
    "menu",
    "how much",
    "what do you offer",
    "what do you do",
    "offer*",
    "treatment*",
    "package*",
    "kitna",
    "kitne",
    "kitni",
    "daam",
    "dam",
    "keemat",
    "kimat",
    "sevaye*",
    "सेवा*",
    "सर्विस*",
    "दाम",
    "कीमत",
    "कितना",
    "कितने",
    "कितनी",
    "रेट",
    "चार्ज",
    "फीस",
];

const STAFF_PHRASES: &[&str] = &[
    "staff",
    "team",
    "stylist*",
    "barber*",
    "doctor*",
    "dentist*",
    "therapist*",
    "employee*",
    "who works",
    "स्टाफ",
    "टीम",
    "डॉक्टर",
    "कर्मचारी",
];

const LOCATION_PHRASES: &[&str] = &[
    "where",
    "address",
    "locat*",
    "direction*",
    "map",
    "maps",
    "how to reach",
    "how do i get there",
    "kahan",
    "kaha",
    "kidhar",
    "कहां",
    "कहा",
    "किधर",
    "पता क्या",
    "पता बता*",
    "का पता",
    "लोकेशन",
    "एड्रेस",
];

const CONTACT_PHRASES: &[&str] = &[
    "phone",
    "contact*",
    "number",
    "email",
    "e mail",
    "mail",
    "call",
    "sampark",
    "फोन",
    "नंबर",
    "ईमेल",
    "संपर्क",
];

const GREETING_PHRASES: &[&str] = &[
    "hello",
    "helo",
    "hlo",
    "hi",
    "hii*",
    "hey",
    "heya",
    "hola",
    "namaste",
    "namaskar",
    "namaskaar",
    "good morning",
    "good afternoon",
    "good evening",
    "ram ram",
    "salaam",
    "assalam*",
    "नमस्ते",
    "नमस्कार",
    "राम राम",
];

const THANKS_PHRASES: &[&str] = &[
    "thank*",
    "thanx",
    "thx",
    "ty",
    "shukriya",
    "dhanyavad",
    "dhanyawad",
    "धन्यवाद",
    "शुक्रिया",
];

/// The weekday the text names, if any (the first one mentioned).
pub fn mentioned_weekday(n: &Normalized) -> Option<Weekday> {
    WEEKDAYS
        .iter()
        .filter_map(|(p, d)| n.phrase_at(p).map(|pos| (pos, *d)))
        .min_by_key(|(pos, _)| *pos)
        .map(|(_, d)| d)
}

fn hours_query(n: &Normalized) -> HoursQuery {
    if let Some(d) = mentioned_weekday(n) {
        HoursQuery::Day(d)
    } else if n.has_any(TOMORROW_PHRASES) {
        HoursQuery::Tomorrow
    } else if n.has_any(TODAY_PHRASES) {
        HoursQuery::Today
    } else if n.has_any(NOW_PHRASES) {
        HoursQuery::Now
    } else {
        HoursQuery::Week
    }
}

/// Detects the intent of an already-normalized message. Rights requests win over
/// everything, then hand-off, then business questions, then greetings.
pub fn detect_normalized(n: &Normalized) -> Intent {
    let data_object = n.has_any(DATA_OBJECTS);
    if n.has_any(DELETE_PHRASES) || (data_object && n.has_any(DELETE_VERBS)) {
        return Intent::DeleteMyData;
    }
    if n.has_any(EXPORT_PHRASES) || (data_object && n.has_any(EXPORT_VERBS)) {
        return Intent::ExportMyData;
    }
    if n.has_any(OPT_OUT_PHRASES) || n.is_only(OPT_OUT_SINGLE, FILLER) {
        return Intent::OptOut;
    }
    if n.has_any(HANDOFF_PHRASES) {
        return Intent::Handoff;
    }
    if n.has_any(BOOKING_PHRASES) {
        return Intent::Booking;
    }
    if n.has_any(HOURS_PHRASES) || mentioned_weekday(n).is_some() {
        return Intent::OpeningHours(hours_query(n));
    }
    if n.has_any(SERVICES_PHRASES) {
        return Intent::Services;
    }
    if n.has_any(STAFF_PHRASES) {
        return Intent::Staff;
    }
    if n.has_any(LOCATION_PHRASES) {
        return Intent::Location;
    }
    if n.has_any(CONTACT_PHRASES) {
        return Intent::Contact;
    }
    if n.has_any(GREETING_PHRASES) {
        return Intent::Greeting;
    }
    if n.has_any(THANKS_PHRASES) {
        return Intent::Thanks;
    }
    Intent::Other
}

/// Detects the intent of a customer message.
pub fn detect_intent(text: &str) -> Intent {
    detect_normalized(&Normalized::new(text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn normalizes_punctuation_emoji_and_case() {
        let n = Normalized::new("  What's   UP?!🙂🙂 Kab-khulte ho…");
        assert_eq!(n.text(), "whats up kab khulte ho");
        assert!(!n.has_devanagari());
        let n = Normalized::new("फ़ोन कहाँ।");
        assert_eq!(n.text(), "फोन कहां");
        assert!(n.has_devanagari());
    }

    #[test]
    fn prefix_patterns_match_words_not_substrings() {
        let n = Normalized::new("my facebook page");
        assert!(!n.has_any(&["book*"]));
        let n = Normalized::new("booking please");
        assert!(n.has_any(&["book*"]));
    }

    #[test]
    fn weekday_first_mentioned_wins() {
        let n = Normalized::new("saturday or sunday?");
        assert_eq!(mentioned_weekday(&n), Some(Weekday::Saturday));
    }
}
