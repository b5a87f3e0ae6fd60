//! The deterministic rule extractor: English, Hindi (Devanagari) and romanized Hindi.

use time::OffsetDateTime;

use std::sync::LazyLock;

use super::text::{PhraseSet, Tok, phrase_at, tokenize, within_one_edit};
use super::when::{month_of, parse_when, weekday_of, window_of};
use super::{
    Budget, BudgetBound, Currency, Extractor, LeadExtraction, LeadFields, LeadRequest, LeadSignals,
    StageHint, local_date_in,
};
use crate::profile::BusinessProfile;
use crate::types::{ConversationTurn, Role};

/// Only the most recent turns are read.
pub const MAX_RULE_TURNS: usize = 100;
/// Only the first characters of each turn are read.
pub const MAX_RULE_CHARS: usize = 8_000;

/// The deterministic extractor: keyword and pattern rules, no network, never fails.
///
/// Customer turns are read oldest first and a later mention replaces an earlier one
/// (the customer changed their mind). Relative dates resolve against the turn's own
/// time when it lies within the 30 days before `now`, else against `now`, in the
/// business's time zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleExtractor;

impl RuleExtractor {
    /// Extracts lead fields from the conversation.
    pub fn extract(
        profile: &BusinessProfile,
        turns: &[ConversationTurn],
        now: OffsetDateTime,
    ) -> LeadExtraction {
        RuleExtractor::extract_with(profile, turns, now, &LeadSignals::default())
    }

    /// Extracts lead fields, also using what the caller knows (WhatsApp profile name,
    /// booking link sent or clicked).
    pub fn extract_with(
        profile: &BusinessProfile,
        turns: &[ConversationTurn],
        now: OffsetDateTime,
        signals: &LeadSignals,
    ) -> LeadExtraction {
        LeadExtraction::new(
            extract_fields(profile, turns, now, signals),
            Extractor::Rules,
        )
    }

    /// Extracts from a [`LeadRequest`].
    pub fn extract_request(req: &LeadRequest) -> LeadExtraction {
        RuleExtractor::extract_with(&req.profile, &req.turns, req.now, &req.signals)
    }
}

fn capped(s: &str) -> &str {
    match s.char_indices().nth(MAX_RULE_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn extract_fields(
    profile: &BusinessProfile,
    turns: &[ConversationTurn],
    now: OffsetDateTime,
    signals: &LeadSignals,
) -> LeadFields {
    let tz = profile.time_zone().unwrap_or(jiff::tz::TimeZone::UTC);
    let matcher = ServiceMatcher::new(profile);
    let booking_urls: Vec<String> = profile
        .booking_links
        .iter()
        .map(|b| b.url.trim().to_lowercase())
        .filter(|u| !u.is_empty())
        .collect();
    let mut f = LeadFields::default();
    let mut stated_name = None;
    let mut stage: Option<StageHint> = None;
    let mut customer_turns = 0usize;
    let mut link_sent = signals.booking_link_sent;
    let oldest_ref = now - time::Duration::days(30);
    let skip = turns.len().saturating_sub(MAX_RULE_TURNS);
    for turn in &turns[skip..] {
        let text = capped(&turn.text);
        if turn.role != Role::Customer {
            if !link_sent {
                let lower = text.to_lowercase();
                link_sent = booking_urls.iter().any(|u| lower.contains(u.as_str()));
            }
            continue;
        }
        customer_turns += 1;
        let toks = tokenize(text);
        let reference = if turn.at <= now && turn.at >= oldest_ref {
            turn.at
        } else {
            now
        };
        let when = parse_when(&toks, local_date_in(&tz, reference));
        let mut enquiry = false;
        if let Some(d) = when.date {
            f.preferred_date = Some(d);
            enquiry = true;
        }
        if let Some(t) = when.time {
            f.preferred_time = Some(t);
            enquiry = true;
        }
        if let Some(s) = matcher.find(&toks) {
            f.service = Some(s.to_owned());
            enquiry = true;
        }
        if let Some(b) = budget(&toks, &when.used) {
            f.budget = Some(b);
            enquiry = true;
        }
        if let Some(n) = stated_name_in(&toks) {
            stated_name = Some(n);
        }
        match stage_in(&toks, text.contains('?'), link_sent) {
            Some(s) => stage = Some(s),
            // Asking again after saying no: engaged again.
            None if enquiry && stage == Some(StageHint::Lost) => stage = None,
            None => {}
        }
    }
    f.name = stated_name.or_else(|| signals.profile_name.as_deref().and_then(clean_profile_name));
    if signals.booking_link_clicked && stage != Some(StageHint::Lost) {
        stage = Some(StageHint::Booked);
    }
    if stage.is_none() && customer_turns > 0 {
        let enquiry = f.service.is_some()
            || f.preferred_date.is_some()
            || f.preferred_time.is_some()
            || f.budget.is_some();
        stage = Some(if enquiry || customer_turns >= 2 {
            StageHint::Engaged
        } else {
            StageHint::New
        });
    }
    f.stage_hint = stage;
    f
}

// ---------------------------------------------------------------- names

pub(crate) fn clean_profile_name(s: &str) -> Option<String> {
    let s = s.trim();
    let n = s.chars().count();
    let ok = (1..=60).contains(&n)
        && s.chars().any(char::is_alphabetic)
        && !s
            .chars()
            .any(|c| c.is_control() || c.is_ascii_digit() || matches!(c, '@' | '[' | ']' | '/'));
    ok.then(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

const NOT_A_NAME: &[&str] = &[
    "a",
    "an",
    "the",
    "is",
    "am",
    "not",
    "no",
    "yes",
    "very",
    "so",
    "just",
    "also",
    "from",
    "and",
    "or",
    "here",
    "there",
    "interested",
    "intrested",
    "looking",
    "fine",
    "good",
    "ok",
    "okay",
    "free",
    "busy",
    "available",
    "coming",
    "going",
    "calling",
    "writing",
    "asking",
    "trying",
    "planning",
    "new",
    "ready",
    "sure",
    "sorry",
    "glad",
    "happy",
    "hoping",
    "wondering",
    "thinking",
    "waiting",
    "late",
    "back",
    "still",
    "really",
    "customer",
    "client",
    "hai",
    "hu",
    "hoon",
    "hun",
    "ho",
    "se",
    "ka",
    "ki",
    "ke",
    "ko",
    "bhi",
    "aa",
    "aaunga",
    "aaungi",
    "ja",
    "abhi",
    "theek",
    "thik",
    "thoda",
    "ek",
    "bahut",
    "yahan",
    "wahan",
    "aapka",
    "aapki",
    "aap",
    "tum",
    "wo",
    "woh",
    "kal",
    "aaj",
    "interest",
    "hi",
    "hello",
    "namaste",
    "sir",
    "madam",
    "mam",
    "maam",
    "bhaiya",
    "didi",
    "ji",
    "please",
    "want",
    "need",
    "book",
    "booking",
    "haircut",
    "to",
    "for",
    "with",
    "in",
    "on",
    "at",
    "of",
    "my",
    "your",
    "it",
    "this",
    "that",
    "what",
    "how",
    "name",
    "naam",
    "है",
    "हूं",
    "हूँ",
    "हू",
    "ठीक",
    "यहां",
    "आ",
    "जा",
    "भी",
    "एक",
    "बहुत",
    "तो",
    "आपका",
    "नाम",
    "कल",
    "आज",
    "मेरा",
    "main",
    "mai",
    "mein",
    "me",
    "par",
    "pe",
    "ghar",
    "office",
    "bahar",
    "में",
    "पर",
    "घर",
    "बाहर",
    "मैं",
];

const NAME_END: &[&str] = &[
    "hai", "h", "he", "hain", "and", "aur", "from", "se", "here", "है", "और", "से",
];

fn is_name_word(t: &Tok) -> bool {
    let n = t.text.chars().count();
    !t.placeholder
        && (2..=30).contains(&n)
        && t.text
            .chars()
            .all(|c| c.is_alphabetic() || ('\u{0900}'..='\u{097F}').contains(&c))
        && !NOT_A_NAME.contains(&t.text.as_str())
        && !NAME_END.contains(&t.text.as_str())
        && weekday_of(&t.text).is_none()
        && month_of(&t.text).is_none()
        && window_of(&t.text).is_none()
}

fn display_name(words: &[&Tok]) -> String {
    let mut out = String::new();
    for (k, w) in words.iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        let mut chars = w.text.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// Up to `max` name words from `i`, stopping at a boundary or a non-name word.
fn name_words(toks: &[Tok], i: usize, max: usize, need_caps: bool) -> Vec<&Tok> {
    let mut v = Vec::new();
    for (k, t) in toks.iter().enumerate().skip(i).take(max) {
        if (k > i && t.boundary_before) || !is_name_word(t) || (need_caps && !t.capitalized) {
            break;
        }
        v.push(t);
    }
    v
}

const INTRO_FREE: &[&str] = &[
    "my name is",
    "my names",
    "my name",
    "name is",
    "myself",
    "mera naam",
    "mera nam",
    "mera name",
    "mera name is",
    "मेरा नाम",
];
const INTRO_HOON: &[&str] = &["main", "mai", "mein", "me", "mn", "मैं", "मै"];
const HOON: &[&str] = &["hoon", "hu", "hun", "hoo", "huun", "हूं", "हू"];
const INTRO_EN: &[&str] = &["i am", "im", "i m", "this is", "its", "it is"];

fn stated_name_in(toks: &[Tok]) -> Option<String> {
    for i in 0..toks.len() {
        // "my name is Asha", "mera naam Asha hai", "मेरा नाम आशा है"
        let mut best = None;
        for p in INTRO_FREE {
            if let Some(n) = phrase_at(toks, i, p) {
                best = best.max(Some(n));
            }
        }
        if let Some(n) = best {
            let mut start = i + n;
            if toks.get(start).is_some_and(|t| t.text == "is") {
                start += 1;
            }
            let words = name_words(toks, start, 3, false);
            if !words.is_empty() {
                return Some(display_name(&words));
            }
        }
        // "main Asha hoon", "मैं आशा हूं"
        if INTRO_HOON.contains(&toks[i].text.as_str()) {
            let words = name_words(toks, i + 1, 2, false);
            let end = i + 1 + words.len();
            if !words.is_empty()
                && toks
                    .get(end)
                    .is_some_and(|t| HOON.contains(&t.text.as_str()))
            {
                return Some(display_name(&words));
            }
        }
        // "I am Asha", "this is Asha Rao", "i am asha." (lower case only at the end)
        for p in INTRO_EN {
            if let Some(n) = phrase_at(toks, i, p) {
                let start = i + n;
                let caps = name_words(toks, start, 2, true);
                if !caps.is_empty() {
                    return Some(display_name(&caps));
                }
                let words = name_words(toks, start, 1, false);
                let ends = toks
                    .get(start + 1)
                    .is_none_or(|t| t.boundary_before || t.placeholder);
                if !words.is_empty() && ends {
                    return Some(display_name(&words));
                }
            }
        }
    }
    // "Asha here"
    if let [first, second, ..] = toks
        && first.capitalized
        && is_name_word(first)
        && second.text == "here"
    {
        return Some(display_name(&[first]));
    }
    None
}

// ---------------------------------------------------------------- services

struct Concept {
    /// A service belongs to the concept when one of its words starts with an anchor.
    anchors: &'static [&'static str],
    /// What customers say.
    synonyms: &'static [&'static str],
}

const CONCEPTS: &[Concept] = &[
    Concept {
        anchors: &["haircut", "cut", "trim"],
        synonyms: &[
            "haircut*",
            "hair cut*",
            "hair cutting",
            "cutting",
            "baal kat*",
            "bal kat*",
            "baal kaat*",
            "baal cut*",
            "bal cut*",
            "baal chhot*",
            "hair trim*",
            "trim*",
            "बाल कट*",
            "बाल कटा*",
            "हेयरकट*",
            "हेयर कट*",
            "कटिंग",
        ],
    },
    Concept {
        anchors: &["colour", "color", "dye", "highlight"],
        synonyms: &[
            "colour*",
            "color*",
            "hair dye",
            "dye*",
            "highlight*",
            "baal rang*",
            "bal rang*",
            "mehndi",
            "mehendi",
            "कलर",
            "बाल रंग*",
            "डाई",
            "मेहंदी",
        ],
    },
    Concept {
        anchors: &["facial"],
        synonyms: &["facial*", "फेशियल", "फेसियल"],
    },
    Concept {
        anchors: &["massage"],
        synonyms: &["massage*", "maalish", "malish", "maalis", "मालिश", "मसाज"],
    },
    Concept {
        anchors: &["spa"],
        synonyms: &["spa", "स्पा"],
    },
    Concept {
        anchors: &["manicure"],
        synonyms: &["manicure*", "mani", "मैनीक्योर", "मेनीक्योर"],
    },
    Concept {
        anchors: &["pedicure"],
        synonyms: &["pedicure*", "pedi", "पेडीक्योर", "पेडिक्योर"],
    },
    Concept {
        anchors: &["shave", "beard"],
        synonyms: &[
            "shave*",
            "beard*",
            "dadhi",
            "daadhi",
            "dhadi",
            "दाढी",
            "शेव",
            "शेविंग",
        ],
    },
    Concept {
        anchors: &["wax"],
        synonyms: &["wax*", "वैक्स*", "वैक्सिंग"],
    },
    Concept {
        anchors: &["threading", "eyebrow"],
        synonyms: &[
            "threading",
            "eyebrow*",
            "eye brow*",
            "आइब्रो",
            "थ्रेडिंग",
            "भौं*",
        ],
    },
    Concept {
        anchors: &["makeup", "bridal"],
        synonyms: &[
            "makeup",
            "make up",
            "bridal",
            "dulhan",
            "shaadi makeup",
            "मेकअप",
            "दुल्हन",
        ],
    },
    Concept {
        anchors: &["consult", "checkup", "check"],
        synonyms: &[
            "consult*",
            "checkup",
            "check up",
            "salah",
            "salaah",
            "सलाह",
            "जांच",
            "चेकअप",
        ],
    },
    Concept {
        anchors: &["cleaning", "scaling"],
        synonyms: &[
            "cleaning",
            "scaling",
            "daant saaf*",
            "dant saaf*",
            "दांत साफ*",
            "सफाई",
        ],
    },
];

struct Entry<'a> {
    canonical: &'a str,
    words: Vec<String>,
    joined: String,
    /// Indices into [`CONCEPTS`] the service belongs to.
    concepts: Vec<usize>,
}

/// Each concept's synonyms, compiled once.
static CONCEPT_SETS: LazyLock<Vec<PhraseSet>> = LazyLock::new(|| {
    CONCEPTS
        .iter()
        .map(|c| PhraseSet::new([c.synonyms]))
        .collect()
});

struct ServiceMatcher<'a> {
    entries: Vec<Entry<'a>>,
}

fn fuzzy_eq(a: &str, b: &str) -> Option<bool> {
    if a == b {
        Some(true)
    } else if a.len() >= 5 && b.len() >= 5 && a.is_ascii() && b.is_ascii() && within_one_edit(a, b)
    {
        Some(false)
    } else {
        None
    }
}

impl<'a> ServiceMatcher<'a> {
    fn new(profile: &'a BusinessProfile) -> Self {
        let entries = profile
            .services
            .iter()
            .map(|s| {
                let words: Vec<String> = tokenize(&s.name).into_iter().map(|t| t.text).collect();
                let joined: String = words.concat();
                let concepts = CONCEPTS
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        c.anchors
                            .iter()
                            .any(|a| words.iter().any(|w| w.starts_with(a)) || joined == *a)
                    })
                    .map(|(k, _)| k)
                    .collect();
                Entry {
                    canonical: s.name.trim(),
                    words,
                    joined,
                    concepts,
                }
            })
            .collect();
        ServiceMatcher { entries }
    }

    /// Score of the best match of one service in the message (0: none).
    fn score(e: &Entry<'_>, toks: &[Tok]) -> usize {
        if e.words.is_empty() {
            return 0;
        }
        let mut best = 0;
        let name_score = |exact: bool| 1000 + e.joined.len() * 2 + usize::from(exact);
        for i in 0..toks.len() {
            // The name's words in a row: "hair colour", "hair color"
            let mut exact = true;
            let mut all = true;
            for (k, w) in e.words.iter().enumerate() {
                match toks.get(i + k).filter(|t| !t.placeholder) {
                    Some(t) => match fuzzy_eq(&t.text, w) {
                        Some(x) => exact &= x,
                        None => {
                            all = false;
                            break;
                        }
                    },
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                best = best.max(name_score(exact));
            }
            // Joined or split: "hair cut" for "Haircut", "haircolour" for "Hair colour"
            if e.joined.chars().count() >= 4 {
                if let Some(x) = fuzzy_eq(&toks[i].text, &e.joined) {
                    best = best.max(name_score(x));
                }
                if let Some(next) = toks.get(i + 1)
                    && toks[i].text.len() + next.text.len() == e.joined.len()
                    && e.joined.starts_with(toks[i].text.as_str())
                    && e.joined.ends_with(next.text.as_str())
                {
                    best = best.max(name_score(true));
                }
            }
        }
        if best == 0 {
            for &k in &e.concepts {
                if let Some((i, n)) = CONCEPT_SETS.get(k).and_then(|set| set.find(toks)) {
                    let len: usize = toks[i..i + n].iter().map(|t| t.text.len()).sum();
                    best = best.max(500 + len);
                }
            }
        }
        best
    }

    fn find(&self, toks: &[Tok]) -> Option<&'a str> {
        let mut best: Option<(usize, &'a str)> = None;
        for e in &self.entries {
            let s = Self::score(e, toks);
            if s > 0 && best.is_none_or(|(b, _)| s > b) {
                best = Some((s, e.canonical));
            }
        }
        best.map(|(_, name)| name)
    }
}

// ---------------------------------------------------------------- budget

const CURRENCY_BEFORE: &[&str] = &["₹", "rs", "inr", "rupees", "$", "usd"];
const CURRENCY_AFTER: &[&str] = &[
    "rs",
    "inr",
    "rupees",
    "rupee",
    "rupaye",
    "rupaiye",
    "rupay",
    "rupiya",
    "rupiye",
    "rupya",
    "रुपये",
    "रुपए",
    "रुपया",
    "रु",
    "usd",
    "dollars",
    "dollar",
];
const AT_MOST_BEFORE: &[&str] = &[
    "under",
    "below",
    "upto",
    "up to",
    "within",
    "max",
    "maximum",
    "less than",
    "not more than",
    "no more than",
    "budget",
    "budget is",
    "budget of",
    "my budget is",
    "bajat",
    "बजट",
];
const AROUND_BEFORE: &[&str] = &[
    "around",
    "about",
    "approx",
    "approximately",
    "roughly",
    "lagbhag",
    "takriban",
    "लगभग",
];
const AT_MOST_AFTER: &[&str] = &[
    "tak",
    "tk",
    "तक",
    "se kam",
    "से कम",
    "ke andar",
    "ke under",
    "ke niche",
    "ke neeche",
    "ke bheetar",
    "के अंदर",
    "max",
    "maximum",
    "budget",
    "ka budget",
    "का बजट",
];
const NOT_MONEY_AFTER: &[&str] = &[
    "min*",
    "hour*",
    "hr*",
    "day*",
    "week*",
    "month*",
    "year*",
    "km",
    "people",
    "person*",
    "log",
    "ghant*",
    "din",
    "mahin*",
    "saal",
    "baje",
    "bje",
    "am",
    "pm",
    "times",
    "minute*",
    "घंट*",
    "दिन",
    "मिनट",
    "लोग",
    "बजे",
];

/// An amount at token `i`: `(rupees or dollars, tokens used, currency suffix seen)`.
fn amount_at(toks: &[Tok], i: usize) -> Option<(u64, usize, bool)> {
    let t = toks[i].text.as_str();
    let (t, suffix_currency) = match t.strip_suffix("rs").or_else(|| t.strip_suffix("inr")) {
        Some(n) if !n.is_empty() => (n, true),
        _ => (t, false),
    };
    let (num, mut mult) = match t.strip_suffix('k') {
        Some(n) => (n, 1_000u64),
        None => (t, 1u64),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty()
        || int.len() > 10
        || frac.len() > 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut used = 1;
    if mult == 1
        && let Some(next) = toks.get(i + 1)
    {
        let m = match next.text.as_str() {
            "k" | "thousand" | "hazar" | "hazaar" | "hajar" | "hazzar" | "हजार" | "हज़ार" => {
                1_000
            }
            "lakh" | "lakhs" | "lac" | "lacs" | "लाख" => 100_000,
            _ => 1,
        };
        if m > 1 {
            mult = m;
            used = 2;
        }
    }
    if !frac.is_empty() && mult == 1 {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac_value: u64 = if frac.is_empty() {
        0
    } else {
        let f: u64 = frac.parse().ok()?;
        let scale = 10u64.pow(u32::try_from(frac.len()).ok()?);
        f.checked_mul(mult)? / scale
    };
    let units = int.checked_mul(mult)?.checked_add(frac_value)?;
    Some((units, used, suffix_currency))
}

fn ends_before(toks: &[Tok], end: usize, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| {
        let n = p.split(' ').count();
        end >= n && phrase_at(toks, end - n, p) == Some(n)
    })
}

fn budget(toks: &[Tok], used: &[usize]) -> Option<Budget> {
    for i in 0..toks.len() {
        if used.contains(&i) {
            continue;
        }
        let Some((units, n, suffix_currency)) = amount_at(toks, i) else {
            continue;
        };
        let after = i + n;
        if toks.get(after).is_some_and(|t| {
            NOT_MONEY_AFTER
                .iter()
                .any(|p| super::text::word_match(&t.text, p))
        }) {
            continue;
        }
        let cur_before = i > 0 && CURRENCY_BEFORE.contains(&toks[i - 1].text.as_str());
        let cur_after = toks
            .get(after)
            .is_some_and(|t| CURRENCY_AFTER.contains(&t.text.as_str()));
        let currency_said = cur_before || cur_after || suffix_currency;
        let cue_end = if cur_before { i - 1 } else { i };
        let after_cue = after + usize::from(cur_after);
        let at_most = ends_before(toks, cue_end, AT_MOST_BEFORE)
            || AT_MOST_AFTER
                .iter()
                .any(|p| phrase_at(toks, after_cue, p).is_some());
        let around = ends_before(toks, cue_end, AROUND_BEFORE);
        if !(currency_said || at_most || around) {
            continue;
        }
        // Without a currency, tiny numbers are not money ("under 5", "around 7").
        if !currency_said && units < 50 {
            continue;
        }
        if units == 0 || units > 1_000_000_000 {
            continue;
        }
        let dollars = (cur_before && matches!(toks[i - 1].text.as_str(), "$" | "usd"))
            || toks
                .get(after)
                .is_some_and(|t| matches!(t.text.as_str(), "usd" | "dollars" | "dollar"));
        return Some(Budget {
            amount_minor: units * 100,
            currency: if dollars {
                Currency::Usd
            } else {
                Currency::Inr
            },
            bound: if at_most {
                BudgetBound::AtMost
            } else {
                BudgetBound::Around
            },
        });
    }
    None
}

// ---------------------------------------------------------------- stage

const LOST: &[&str] = &[
    "not interested",
    "no longer interested",
    "not intrested",
    "not interest*",
    "dont want",
    "do not want",
    "dont need",
    "do not need",
    "no need",
    "not needed",
    "no thanks",
    "no thank you",
    "nahi chahiye",
    "nahin chahiye",
    "nhi chahiye",
    "nai chahiye",
    "nahi chahie",
    "nahi chaiye",
    "nhi chaiye",
    "nahi chahiye",
    "mat karo",
    "rehne do",
    "rahne do",
    "rehne dijiye",
    "interest nahi",
    "interested nahi",
    "zarurat nahi",
    "jarurat nahi",
    "zaroorat nahi",
    "jaroorat nahi",
    "cancel it",
    "cancel my",
    "cancel the",
    "please cancel",
    "pls cancel",
    "cancel kar*",
    "cancel kr*",
    "cancel karo",
    "booking cancel",
    "नहीं चाहिए",
    "नही चाहिए",
    "रहने दो",
    "रहने दीजिए",
    "जरूरत नहीं",
    "कैंसिल",
    "रद्द",
];
const BOOKED: &[&str] = &[
    "booked",
    "i booked",
    "have booked",
    "booking done",
    "booking confirmed",
    "booking is confirmed",
    "appointment confirmed",
    "appointment booked",
    "book kar diya",
    "book kar di",
    "book kr diya",
    "book kr di",
    "book ho gaya",
    "book ho gayi",
    "book ho gyi",
    "book ho gya",
    "booking ho gayi",
    "booking ho gai",
    "booking ho gaya",
    "booking kar di",
    "booking kar diya",
    "बुक कर दिया",
    "बुक कर दी",
    "बुक हो गया",
    "बुक हो गई",
    "बुकिंग हो गई",
    "बुकिंग कर दी",
];
const BOOKED_AFTER_LINK: &[&str] = &[
    "confirm*",
    "done",
    "see you",
    "see u",
    "pakka",
    "ho gaya",
    "ho gya",
    "kar diya",
    "kr diya",
    "will come",
    "will be there",
    "aa jaunga",
    "aa jaungi",
    "aaunga",
    "aaungi",
    "पक्का",
    "कन्फर्म",
    "हो गया",
    "कर दिया",
    "आऊंगा",
    "आऊंगी",
    "आ जाऊंगा",
    "आ जाऊंगी",
];
const NEGATION: &[&str] = &[
    "not",
    "nahi",
    "nahin",
    "nhi",
    "nai",
    "नहीं",
    "नही",
    "dont",
    "didnt",
    "havent",
    "hasnt",
    "cant",
    "cannot",
    "yet",
    "never",
    "fully",
    "are you",
    "is it",
    "you are",
];

fn stage_in(toks: &[Tok], question: bool, link_sent: bool) -> Option<StageHint> {
    static LOST_SET: LazyLock<PhraseSet> = LazyLock::new(|| PhraseSet::new([LOST]));
    static NEGATION_SET: LazyLock<PhraseSet> = LazyLock::new(|| PhraseSet::new([NEGATION]));
    static BOOKED_SET: LazyLock<PhraseSet> = LazyLock::new(|| PhraseSet::new([BOOKED]));
    static AFTER_LINK_SET: LazyLock<PhraseSet> =
        LazyLock::new(|| PhraseSet::new([BOOKED_AFTER_LINK]));
    if LOST_SET.any(toks) {
        return Some(StageHint::Lost);
    }
    if question || NEGATION_SET.any(toks) {
        return None;
    }
    if BOOKED_SET.any(toks) || (link_sent && AFTER_LINK_SET.any(toks)) {
        return Some(StageHint::Booked);
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn name(s: &str) -> Option<String> {
        stated_name_in(&tokenize(s))
    }

    #[test]
    fn names() {
        assert_eq!(name("my name is asha").as_deref(), Some("Asha"));
        assert_eq!(
            name("I am Asha Rao, want a haircut").as_deref(),
            Some("Asha Rao")
        );
        assert_eq!(name("i am interested in a facial"), None);
        assert_eq!(name("main Asha hoon"), Some("Asha".into()));
        assert_eq!(name("main aa raha hoon"), None);
        assert_eq!(name("मेरा नाम आशा है").as_deref(), Some("आशा"));
        assert_eq!(name("my name is [NAME]"), None);
    }

    #[test]
    fn amounts() {
        let t = tokenize("2.5k");
        assert_eq!(amount_at(&t, 0), Some((2_500, 1, false)));
        let t = tokenize("1.5 lakh");
        assert_eq!(amount_at(&t, 0), Some((150_000, 2, false)));
        let t = tokenize("99999999999999999999");
        assert_eq!(amount_at(&t, 0), None);
        let t = tokenize("1500rs");
        assert_eq!(amount_at(&t, 0), Some((1_500, 1, true)));
    }

    #[test]
    fn profile_names_are_cleaned() {
        assert_eq!(clean_profile_name("  Asha   Rao "), Some("Asha Rao".into()));
        assert_eq!(clean_profile_name("+91 98xxxx"), None);
        assert_eq!(clean_profile_name("🙂"), None);
        assert_eq!(clean_profile_name(""), None);
    }
}
